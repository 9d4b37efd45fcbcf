/*
 * What the host-independent half of a pushpark module (this directory) needs from the SIP
 * server it runs in, and the engine process's entry point.
 *
 * Kamailio and OpenSIPS both fork their SIP workers and run the engine in one process of
 * the module's own; the code here is that part: the worker <-> engine-process IPC
 * (pp_ipc), the engine process's loop (pp_engine_loop), the requests it serves
 * (pp_requests), the events it turns into host actions (pp_events) and the log bridge
 * (pp_log). It keeps no table of calls: what the host needs back about a call travels
 * with it in the engine (host_data, see pp_requests.h) and returns on its events. An adapter keeps its host's glue only:
 * exports, transaction calls, replies, RPC/MI.
 *
 * Both hosts also parse SIP the same way (both inherited SER's parser), so the registrar
 * side (pp_registrar: Contact checks, Feature-Caps, bindings to the engine), the AOR form
 * (pp_sip), the modparams both take (pp_modparams) and the statistics (pp_stats) are here
 * too.
 *
 * Each adapter provides a header "pp_host_defs.h" (found on its include path) that makes
 * these available, under the names both hosts already use:
 *   LM_ERR, LM_WARN, LM_INFO, LM_DBG, LM_CRIT   printf-like logging macros
 *   L_DBG, L_INFO, L_WARN                        the log levels (pp_log_level_of)
 *   shm_malloc, shm_free                         memory every host process can read (the
 *                                                IPC's shared flags, listings' JSON)
 *   stat_var, stat_export_t, update_stat         statistics (pp_stats)
 * a header "pp_host_sip.h" for the SIP code (struct sip_msg, str, contact_t, the parsers,
 * add_lump_rpl, PP_FOREACH_CONTACT; the glue pp_registrar.h names), and defines the
 * pp_host_* functions below.
 */
#ifndef PP_HOST_H
#define PP_HOST_H

#include <stdint.h>

#include "pushpark.h"
#include "pp_host_defs.h"

/* The host's half, in its adapter, called in the engine process. */

/* The host's log level, as the engine's; the host's work at each turn of the loop. */
pushpark_log_level pp_host_log_level(void);
void pp_host_loop_turn(void);
/* The reply_reason modparam (with pp_reply_code, see pp_modparams.h; the others are read
 * from there). NULL or "": the engine's reason. */
const char *pp_host_reply_reason(void);

/* Call actions. host_ref is the one the worker parked the call with; host_data what it
 * sent along (pp_req_hdr_t), which the engine carried with the call and gives back on its
 * events. Each returns 0 when the call was handled, -1 when it is gone (cancelled,
 * answered, unknown): the engine then forgets it. fork_reject returns 1 when other
 * branches still ring (the host ends the call with their answers). resume relays the call
 * to the event's AOR's bindings, append adds the branches of the woken device (its key:
 * pp_instance_is); a device woken on another node of a cluster is reached through its
 * node instead (pushpark_event_get_relay_uri/_path). */
int pp_host_resume(uint64_t host_ref, uint32_t host_data, const pushpark_event *ev);
int pp_host_reject(uint64_t host_ref, uint32_t host_data, int code, const char *reason);
int pp_host_fork_reject(uint64_t host_ref, int code, const char *reason);
int pp_host_append(uint64_t host_ref, const pushpark_event *ev);
/* The provisional_reply modparam's reply, while the call rings nowhere. */
int pp_host_provisional_reply(uint64_t host_ref);
/* How the call ended when resume or append found it gone: its final reply's code, 487
 * when cancelled, 0 when its transaction is gone too. */
int pp_host_ended(uint64_t host_ref);
/* INVITE + CANCEL (Reason: SIP;cause=code[;text=reason]) to the event's device, for a
 * call that ended without it (see pp_late.h): 0 sent, PP_LATE_NO_CONTACT when the AOR has
 * no contact of the device, -1 not sent (the caller logs each). */
#define PP_LATE_NO_CONTACT (-2)
int pp_host_late_wake(const pushpark_event *ev, int code, const char *reason);

/* The engine process's body, after the host made the process (it has forked it and run
 * its per-process initialisation): starts the engine (retrying), serves requests,
 * turns events into host actions. Returns only by exiting the process (SIGTERM,
 * SIGINT). */
void pp_engine_main(void);

#endif

/*
 * tm glue: suspending an INVITE in a SIP worker, and resuming, rejecting, ringing and
 * extending it from the engine process.
 */
#ifndef PP_TM_H
#define PP_TM_H

#include <stdint.h>
#include "core/parser/msg_parser.h"
#include "pushpark.h"

/* mod_init: binds tm (required) and registrar (optional, for second devices); checks
 * the resume route exists. */
int pp_tm_init(void);

/* SIP worker: pushpark_park(). Returns PP_RET_* (0 for a retransmission: stop). */
int pp_tm_park(sip_msg_t *msg);
/* SIP worker: pushpark_fork([aor]), after lookup(). aor NULL: the Request-URI's (as
 * received when lookup() rewrote it). PP_RET_PARKED: relayed and/or waiting for pushed
 * devices; PP_RET_NO_DEVICE: nothing to ring, nothing pushed; PP_RET_ERROR. */
int pp_tm_fork(sip_msg_t *msg, str *aor);

/* Engine process. Each returns 0 when the transaction was handled, -1 when it is gone
 * (cancelled, already answered, unknown); after a failed resume or append the engine
 * should forget the call (a reject has ended it already). pp_tm_fork_reject replies
 * only when nothing rings any more, else returns 1 (tm ends the call with the ringing
 * branches' answers). pp_tm_resume continues the call in the resume route (which looks
 * the AOR up itself). pp_tm_append adds the event's device's contacts (its key, a
 * normalised +sip.instance), else all new ones; a device woken on another node of a
 * cluster rings through that node (the event's relay Path). fr_ticks is the host_data
 * pp_tm_park sent with the call, which the engine gives back on its events: tm's fr
 * timeout before the park guard replaced it, restored for the call's new branches (0:
 * keep the guard). */
int pp_tm_resume(uint64_t host_ref, uint32_t fr_ticks, const pushpark_event *ev);
int pp_tm_reject(uint64_t host_ref, uint32_t fr_ticks, int code, const char *reason);
int pp_tm_fork_reject(uint64_t host_ref, int code, const char *reason);
int pp_tm_append(uint64_t host_ref, const pushpark_event *ev);
/* The provisional_reply modparam's reply, while the call rings nowhere. */
int pp_tm_provisional(uint64_t host_ref);
/* How the call ended: its final reply's code, 487 when cancelled; 0 while it goes on or
 * when its transaction is gone. */
int pp_tm_ended(uint64_t host_ref);

#endif

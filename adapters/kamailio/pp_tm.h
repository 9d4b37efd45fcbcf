/*
 * tm glue: suspending an INVITE in a SIP worker, and resuming, rejecting, ringing and
 * extending it from the engine process.
 */
#ifndef PP_TM_H
#define PP_TM_H

#include <stdint.h>
#include "core/parser/msg_parser.h"
#include "pp_host.h"

/* mod_init: binds tm (required) and registrar (optional, for second devices); checks
 * the resume route exists. */
int pp_tm_init(void);

/* SIP worker: pushpark_park(). Returns PP_RET_* (0 for a retransmission: stop). */
int pp_tm_park(sip_msg_t *msg);
/* SIP worker: pushpark_fork([aor]), after lookup(). aor NULL: the Request-URI's (as
 * received when lookup() rewrote it). PP_RET_PARKED: relayed and/or waiting for pushed
 * devices; PP_RET_NO_DEVICE: nothing to ring, nothing pushed; PP_RET_ERROR. */
int pp_tm_fork(sip_msg_t *msg, str *aor);

/* Engine process: the call actions of pp_host.h are pp_tm.c's. Each returns 0 when the
 * transaction was handled, -1 when it is gone (cancelled, already answered, unknown);
 * after a failed resume or append the engine should forget the call (a reject has ended
 * it already). pp_host_fork_reject replies
 * only when nothing rings any more, else returns 1 (tm ends the call with the ringing
 * branches' answers). pp_host_resume continues the call in the resume route (which looks
 * the AOR up itself). pp_host_append adds the event's device's contacts (its key, a
 * normalised +sip.instance), else all new ones; a device woken on another node of a
 * cluster rings through that node (the event's relay Path). fr_ticks is the host_data
 * pp_tm_park sent with the call, which the engine gives back on its events: tm's fr
 * timeout before the park guard replaced it, restored for the call's new branches (0:
 * keep the guard). */

#endif

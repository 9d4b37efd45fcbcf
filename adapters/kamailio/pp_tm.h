/*
 * tm glue: suspending an INVITE in a SIP worker, and resuming, rejecting, ringing and
 * extending it from the engine process.
 */
#ifndef PP_TM_H
#define PP_TM_H

#include <stdint.h>
#include "core/parser/msg_parser.h"

/* mod_init: binds tm (required) and registrar (optional, for second devices); checks
 * the resume route exists. */
int pp_tm_init(void);

/* SIP worker: pushpark_park(). Returns PP_RET_* (0 for a retransmission: stop). */
int pp_tm_park(sip_msg_t *msg);

/* Engine process. Each returns 0 when the transaction was handled, -1 when it is gone
 * (cancelled, already answered, unknown); after a failed resume or append the engine
 * should forget the call (a reject has ended it already). */
int pp_tm_resume(uint64_t host_ref, uint32_t fr_ticks);
int pp_tm_reject(uint64_t host_ref, uint32_t fr_ticks, int code, const char *reason);
int pp_tm_append(uint64_t host_ref, const char *aor);
int pp_tm_provisional(uint64_t host_ref, int code, str *reason);

#endif

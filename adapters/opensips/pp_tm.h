/*
 * tm glue: parking an INVITE in a SIP worker, and from the engine process adding the
 * woken devices' branches, replying and ringing (see pp_tm.c).
 */
#ifndef PP_TM_H
#define PP_TM_H

#include <stdint.h>
#include "parser/msg_parser.h"
#include "pp_host.h"

/* mod_init: binds tm and usrloc (both required) and the location table. */
int pp_tm_init(void);

/* SIP worker: pushpark_park(). Returns PP_RET_* (0 for a retransmission: stop). */
int pp_tm_park(struct sip_msg *msg);
/* SIP worker: pushpark_fork([aor]), after lookup(). aor NULL: the Request-URI as
 * received. PP_RET_PARKED: relayed and/or waiting for pushed devices; PP_RET_NO_DEVICE:
 * nothing to ring, nothing pushed; PP_RET_ERROR. */
int pp_tm_fork(struct sip_msg *msg, str *aor);

/* Engine process: the call actions of pp_host.h are pp_tm.c's. Each returns 0 when the
 * transaction was handled, -1 when it is gone (cancelled, already answered, unknown):
 * the engine then forgets the call.
 * pp_host_resume rings the AOR's contacts, pp_host_append the device's (its key, a
 * normalised +sip.instance; all new ones of the AOR when none is that device); a device
 * woken on another node of a cluster rings through that node (the event's relay Path).
 * pp_host_fork_reject replies only when nothing else rings, else returns 1 (tm ends the call
 * with the ringing branches' answers). The OpenSIPS glue sends no host_data with a call
 * (the park guard is the phony branch's timer alone, nothing to restore): host_ref,
 * (hash_index << 32) | label, is all it needs back; a parked call rings nowhere else, so
 * pp_host_reject is pp_host_fork_reject. */

#endif

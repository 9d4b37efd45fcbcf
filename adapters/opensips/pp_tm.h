/*
 * tm glue: parking an INVITE in a SIP worker, and from the engine process adding the
 * woken devices' branches, replying and ringing (see pp_tm.c).
 */
#ifndef PP_TM_H
#define PP_TM_H

#include <stdint.h>
#include "parser/msg_parser.h"
#include "pushpark.h"

/* mod_init: binds tm and usrloc (both required) and the location table. */
int pp_tm_init(void);

/* SIP worker: pushpark_park(). Returns PP_RET_* (0 for a retransmission: stop). */
int pp_tm_park(struct sip_msg *msg);
/* SIP worker: pushpark_fork([aor]), after lookup(). aor NULL: the Request-URI as
 * received. PP_RET_PARKED: relayed and/or waiting for pushed devices; PP_RET_NO_DEVICE:
 * nothing to ring, nothing pushed; PP_RET_ERROR. */
int pp_tm_fork(struct sip_msg *msg, str *aor);

/* Engine process. Each returns 0 when the transaction was handled, -1 when it is gone
 * (cancelled, already answered, unknown): the engine then forgets the call.
 * pp_tm_resume rings the AOR's contacts, pp_tm_append the device's (its key, a
 * normalised +sip.instance; all new ones of the AOR when none is that device); a device
 * woken on another node of a cluster rings through that node (the event's relay Path).
 * pp_tm_reject replies only when nothing else rings, else returns 1 (tm ends the call
 * with the ringing branches' answers). The OpenSIPS glue sends no host_data with a call
 * (the park guard is the phony branch's timer alone, nothing to restore): host_ref,
 * (hash_index << 32) | label, is all it needs back. */
int pp_tm_resume(uint64_t host_ref, const pushpark_event *ev);
int pp_tm_append(uint64_t host_ref, const pushpark_event *ev);
int pp_tm_reject(uint64_t host_ref, int code, const char *reason);
/* The provisional_reply modparam's reply, while the call rings nowhere. */
int pp_tm_provisional(uint64_t host_ref);
/* How the call ended: its final reply's code, 487 when cancelled; 0 while it goes on or
 * when its transaction is gone. */
int pp_tm_ended(uint64_t host_ref);

#endif

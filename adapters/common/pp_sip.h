/*
 * Small SIP helpers (host-independent, see pp_host.h): the AOR and +sip.instance forms
 * the engine keys devices by, on the SIP parser both hosts inherited from SER (the
 * host's pp_host_sip.h).
 */
#ifndef PP_SIP_H
#define PP_SIP_H

#include "pp_host.h"
#include "pp_host_sip.h"
#include "pp_ipc.h"

#define PP_AOR_MAX 512

/* The address of record of a SIP URI as the engine keys it: "sip:user@host" (scheme
 * folded to sip, port and parameters dropped), so the INVITE's Request-URI and the
 * REGISTER's To name the same AOR. buf must hold PP_AOR_MAX bytes. 0 or -1. */
int pp_aor(str *uri, char *buf, str *aor);

/* 1 when instance, a +sip.instance as the host keeps it, names device, an event's device
 * key (the engine compares them: pushpark_instance_matches), else 0. */
int pp_instance_is(str *instance, const char *device);

/* The CANCEL header line "Reason: SIP;cause=<code>[;text="<text>"]\r\n" (RFC 3326; quotes,
 * backslashes and control characters left out of text) in buf, which holds
 * PP_CANCEL_REASON_MAX bytes. Returns its length. */
#define PP_CANCEL_REASON_MAX 320
int pp_reason_header(char *buf, int code, const char *text);

/* pp_req_add (pp_ipc.h) of a host str. */
#define pp_req_add_str(r, sp) pp_req_add((r), (sp)->s, (sp)->len)

/* Starts a PARK or FORK request (op) for an INVITE: its Call-ID, the AOR of uri, the
 * caller's URI and display name. fn names the script function for the log. 0, or -1
 * logged (not an INVITE, headers missing, too large). */
int pp_req_invite(pp_req_t *r, int op, struct sip_msg *msg, str *uri, const char *fn);

/* Script return values of pushpark_park() and pushpark_fork(). */
#define PP_RET_PARKED 1
#define PP_RET_ERROR (-1)
#define PP_RET_NO_DEVICE (-2)

/* Sends the PARK or FORK request r for msg's call host_ref (with the park_timeout
 * modparam) and waits for the engine's answer, at most ipc_timeout: counted in the
 * statistics and logged, PP_RET_PARKED when the engine took the call, PP_RET_NO_DEVICE,
 * else PP_RET_ERROR (no answer in time included: the engine keeps nothing then, see
 * pp_call). */
int pp_req_send(struct sip_msg *msg, pp_req_t *r, uint64_t host_ref);
/* A PARK or FORK that failed before it was sent: counted; PP_RET_ERROR. */
int pp_req_failed(void);

/* Adds a push-capable contact (its URI and raw +sip.instance) to a FORK request, with
 * whether it rings now (not pushed). -1 when it does not fit. */
int pp_req_add_fork_contact(pp_req_t *r, str *uri, str *instance, int ringing);

#endif

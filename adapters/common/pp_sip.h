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
/* A +sip.instance as the engine keys devices (pushpark.h limits it to 1024 bytes). */
#define PP_INSTANCE_MAX 1025

/* The address of record of a SIP URI as the engine keys it: "sip:user@host" (scheme
 * folded to sip, port and parameters dropped), so the INVITE's Request-URI and the
 * REGISTER's To name the same AOR. buf must hold PP_AOR_MAX bytes. 0 or -1. */
int pp_aor(str *uri, char *buf, str *aor);

/* A +sip.instance as the engine compares them: without quotes, <> and blanks, and
 * "urn:uuid:" URNs lower-cased. out holds PP_INSTANCE_MAX bytes; "" when too long. */
void pp_instance_norm(str *in, char *out);

/* pp_req_add (pp_ipc.h) of a host str. */
#define pp_req_add_str(r, sp) pp_req_add((r), (sp)->s, (sp)->len)

/* Adds an INVITE's strings to a PARK or FORK request: its Call-ID, the AOR of uri, the
 * caller's URI and display name. 0, or -1 logged. */
int pp_req_add_call(pp_req_t *r, struct sip_msg *msg, str *uri);

/* Adds a push-capable contact (its URI and raw +sip.instance) to a FORK request, with
 * whether it rings now (not pushed). -1 when it does not fit. */
int pp_req_add_fork_contact(pp_req_t *r, str *uri, str *instance, int ringing);

#endif

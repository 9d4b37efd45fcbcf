/*
 * Small SIP helpers: the AOR and +sip.instance forms the engine keys devices by.
 */
#ifndef PP_SIP_H
#define PP_SIP_H

#include "str.h"

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

#endif

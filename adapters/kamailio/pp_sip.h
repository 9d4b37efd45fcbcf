/*
 * Small SIP helpers shared by parking and registration.
 */
#ifndef PP_SIP_H
#define PP_SIP_H

#include "core/str.h"

#define PP_AOR_MAX 512

/* The address of record of a SIP URI as the engine keys it: "sip:user@host" (scheme
 * folded to sip, port and parameters dropped), so the INVITE's Request-URI and the
 * REGISTER's To name the same AOR. buf must hold PP_AOR_MAX bytes. 0 or -1. */
int pp_aor(str *uri, char *buf, str *aor);

#endif

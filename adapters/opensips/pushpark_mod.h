/*
 * The OpenSIPS module's own parameters, shared by its files; the other modparams and the
 * statistics are ../common's (pp_modparams.h, pp_stats.h).
 */
#ifndef PUSHPARK_MOD_H
#define PUSHPARK_MOD_H

#include "pp_modparams.h"
#include "pp_stats.h"


extern char *pp_reply_reason;       /* "reply_reason" */
extern char *pp_provisional_reason; /* "provisional_reason" */
extern char *pp_location_table;     /* "location_table": the usrloc table woken devices are read from */

#endif

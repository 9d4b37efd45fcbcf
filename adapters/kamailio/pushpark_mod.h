/*
 * The Kamailio module's own parameters and return codes, shared by its files; the other
 * modparams and the statistics are ../common's (pp_modparams.h, pp_stats.h).
 */
#ifndef PUSHPARK_MOD_H
#define PUSHPARK_MOD_H

#include "core/str.h"
#include "pp_modparams.h"
#include "pp_stats.h"


/* modparams */
extern str pp_resume_route;        /* "resume_route" */
extern str pp_reply_reason;        /* "reply_reason" */
extern str pp_provisional_reason;  /* "provisional_reason" */
extern str pp_location_table;      /* "location_table": for second-device branches */

#endif

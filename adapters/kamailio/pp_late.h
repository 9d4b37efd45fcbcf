/*
 * Late wake: a device woken by a push for a call that ended before it registered (or
 * before its branch could be added) gets that call's INVITE and at once its CANCEL, with
 * the Reason code and text given, so the app can end the call it showed.
 */
#ifndef PP_LATE_H
#define PP_LATE_H

#include "pp_host.h"

/* mod_init: binds usrloc and tm (-1 when usrloc is not loaded: late wakes are then only
 * logged). */
int pp_late_init(void);

/* Engine process: pp_host_late_wake (pp_host.h) is pp_late.c's, for a LATE_WAKE event
 * or a RESUME/APPEND_BRANCH whose call had ended. */

#endif

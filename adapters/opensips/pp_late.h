/*
 * Late wake: a device that registers after the call it was pushed for ended (or before
 * its branch could be added) gets that call's INVITE and at once a CANCEL whose Reason
 * (code, text) says how it ended (pp_late.c).
 */
#ifndef PP_LATE_H
#define PP_LATE_H

#include "pp_host.h"

/* mod_init: binds tm. 0 or -1. */
int pp_late_init(void);
/* Engine process: pp_host_late_wake (pp_host.h) is pp_late.c's, for a LATE_WAKE event
 * or a RESUME/APPEND_BRANCH whose call had ended. */

#endif

/*
 * Late wake: a device that registers after the call it was pushed for ended (or before
 * its branch could be added) gets that call's INVITE and at once a CANCEL whose Reason
 * (code, text) says how it ended (pp_late.c).
 */
#ifndef PP_LATE_H
#define PP_LATE_H

#include "pushpark.h"

/* mod_init: binds tm. 0 or -1. */
int pp_late_init(void);
/* Engine process: a LATE_WAKE event, or a RESUME/APPEND_BRANCH whose call had ended. */
void pp_late_wake(const pushpark_event *ev, int code, const char *reason);

#endif

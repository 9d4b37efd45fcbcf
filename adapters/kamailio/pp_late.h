/*
 * Late wake: a device woken by a push for a call that ended before it registered gets
 * that call's INVITE and at once its CANCEL, so the app can end the call it showed.
 */
#ifndef PP_LATE_H
#define PP_LATE_H

#include "pushpark.h"

/* mod_init: binds usrloc and tm (-1 when usrloc is not loaded: late wakes are then only
 * logged). */
int pp_late_init(void);

/* Engine process, on PUSHPARK_EVENT_LATE_WAKE. */
void pp_late_wake(const pushpark_event *ev);

#endif

/*
 * MI commands: pushpark_stats, pushpark_parked, pushpark_devices.
 */
#ifndef PP_MI_H
#define PP_MI_H

#include "mi/mi.h"

extern const mi_export_t pp_mi_cmds[];

#endif

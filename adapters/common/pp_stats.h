/*
 * The module's statistics, the same in every host (host-independent, see pp_host.h): the
 * host exports pp_stat_exports and counts with update_stat.
 */
#ifndef PP_STATS_H
#define PP_STATS_H

#include "pp_host.h"

extern stat_var *pp_st_parked;
extern stat_var *pp_st_no_device;
extern stat_var *pp_st_park_errors;
extern stat_var *pp_st_resumed;
extern stat_var *pp_st_rejected;
extern stat_var *pp_st_cancelled;
extern stat_var *pp_st_branches;
extern stat_var *pp_st_registers;
extern stat_var *pp_st_forked;
extern stat_var *pp_st_late_wakes;
extern stat_var *pp_st_register_refused;

/* The host's statistics export (names as the operators see them), NULL-terminated. */
extern stat_export_t pp_stat_exports[];

#endif

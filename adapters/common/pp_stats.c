/*
 * The module's statistics (see pp_stats.h).
 */
#include "pp_stats.h"

stat_var *pp_st_parked;
stat_var *pp_st_no_device;
stat_var *pp_st_park_errors;
stat_var *pp_st_resumed;
stat_var *pp_st_rejected;
stat_var *pp_st_cancelled;
stat_var *pp_st_branches;
stat_var *pp_st_registers;
stat_var *pp_st_forked;
stat_var *pp_st_late_wakes;
stat_var *pp_st_register_refused;

stat_export_t pp_stat_exports[] = {
		{"parked", 0, &pp_st_parked},
		{"park_no_device", 0, &pp_st_no_device},
		{"park_errors", 0, &pp_st_park_errors},
		{"resumed", 0, &pp_st_resumed},
		{"rejected", 0, &pp_st_rejected},
		{"cancelled", 0, &pp_st_cancelled},
		{"branches_added", 0, &pp_st_branches},
		{"registers", 0, &pp_st_registers},
		{"forked", 0, &pp_st_forked},
		{"late_wakes", 0, &pp_st_late_wakes},
		{"registers_refused", 0, &pp_st_register_refused},
		{0, 0, 0}};

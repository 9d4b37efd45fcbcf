/*
 * The engine process as a Kamailio process (see pp_engine_proc.h): registered in mod_init
 * (register_procs), forked with fork_process, following Kamailio's cfg framework and
 * debug level; its work is ../common's pp_engine_main with the tm glue as host actions.
 */
#include "core/cfg/cfg_struct.h"
#include "core/counters.h"
#include "core/dprint.h"
#include "core/pt.h"
#include "core/sr_module.h"
#include "pp_engine_proc.h"
#include "pp_host.h"
#include "pp_ipc.h"
#include "pp_log.h"
#include "pushpark_mod.h"

/* Follows Kamailio's debug level (e.g. kamcmd cfg.set_now_int core debug 3). */
pushpark_log_level pp_host_log_level(void)
{
	return pp_log_level_of(get_debug_level(LOG_MNAME, LOG_MNAME_LEN));
}

void pp_host_loop_turn(void)
{
	cfg_update();
}

const char *pp_host_reply_reason(void)
{
	return pp_reply_reason.s;
}

int pp_engine_forking = 0;

int pp_engine_fork(void)
{
	int pid;

	pp_engine_forking = 1; /* seen by this module's child_init() in the new process */
	pid = fork_process(PROC_RPC, "pushpark engine", 1);
	if(pid < 0)
		return -1;
	if(pid > 0) {
		pp_engine_forking = 0;
		pp_ipc_close_reader();
		return 0;
	}
	if(cfg_child_init())
		return -1;
	pp_engine_main();
	return -1; /* not reached */
}

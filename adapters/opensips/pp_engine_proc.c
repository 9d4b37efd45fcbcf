/*
 * The engine process as an OpenSIPS process (see pp_engine_proc.h): exported in the
 * module's procs, forked by OpenSIPS before its SIP workers and initialised like them
 * (PROC_FLAG_INITCHILD); its work is ../common's pp_engine_main with the tm glue
 * (pp_tm.c) as host actions.
 */
#include "dprint.h"
#include "pp_engine_proc.h"
#include "pp_host.h"
#include "pp_ipc.h"
#include "pp_log.h"
#include "pushpark_mod.h"

/* Follows OpenSIPS's log level (e.g. opensips-cli -x mi log_level 4). */
pushpark_log_level pp_host_log_level(void)
{
	return pp_log_level_of(*log_level);
}

void pp_host_loop_turn(void)
{
}

const char *pp_host_reply_reason(void)
{
	return pp_reply_reason;
}

int pp_engine_forking = 0;

int pp_engine_pre_fork(void)
{
	pp_engine_forking = 1;
	return 0;
}

/* In the main process, once the engine process exists: the SIP workers, forked later,
 * inherit no read end. */
int pp_engine_post_fork(void)
{
	pp_engine_forking = 0;
	pp_ipc_close_reader();
	return 0;
}

void pp_engine_proc(int rank)
{
	pp_engine_forking = 0;
	pp_engine_main();
}

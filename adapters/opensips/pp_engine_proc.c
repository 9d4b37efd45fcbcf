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
#include "pp_late.h"
#include "pp_log.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

/* Follows OpenSIPS's log level (e.g. opensips-cli -x mi log_level 4). */
static pushpark_log_level pp_os_log_level(void)
{
	return pp_log_level_of(*log_level);
}

static void pp_os_loop_turn(void)
{
}

static int pp_os_resume(uint64_t host_ref, uint32_t host_data, const pushpark_event *ev)
{
	return pp_tm_resume(host_ref, ev);
}

static int pp_os_reject(uint64_t host_ref, uint32_t host_data, int code, const char *reason)
{
	return pp_tm_reject(host_ref, code, reason);
}

static pp_host_t pp_opensips = {
		.log_level = pp_os_log_level,
		.loop_turn = pp_os_loop_turn,
		.resume = pp_os_resume,
		.reject = pp_os_reject,
		.fork_reject = pp_tm_reject,
		.append = pp_tm_append,
		.provisional_reply = pp_tm_provisional,
		.ended = pp_tm_ended,
		.late_wake = pp_late_wake,
};

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
	pp_opensips.reply_reason = pp_reply_reason;
	pp_engine_main(&pp_opensips);
}

/*
 * The log bridge: the engine's log lines, written on its threads, reach the host's log
 * from the engine process's loop.
 */
#ifndef PP_LOG_H
#define PP_LOG_H

#include "pushpark.h"

/* Engine process: makes the pipe and installs the engine's log sink at level. */
int pp_log_init(pushpark_log_level level);
/* Each loop turn: follows the host's level (e.g. changed at run time). */
void pp_log_follow_level(pushpark_log_level level);
/* The engine's level for the host's (its L_DBG ... L_ERR, see pp_host.h). */
pushpark_log_level pp_log_level_of(int host_level);
/* Readable when lines wait: pp_log_drain logs them. */
int pp_log_fd(void);
void pp_log_drain(void);

#endif

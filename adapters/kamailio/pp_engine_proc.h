/*
 * The engine process as a Kamailio process: forked from child_init(PROC_MAIN), running
 * ../common's engine loop with Kamailio's services and tm glue.
 */
#ifndef PP_ENGINE_PROC_H
#define PP_ENGINE_PROC_H

/* child_init(PROC_MAIN): forks the engine process (never returns in the child). */
int pp_engine_fork(void);
/* Set while the engine process is being forked: its child_init() must keep the reader. */
extern int pp_engine_forking;

#endif

/*
 * The engine process: the one Kamailio process that owns the pushpark engine and its
 * threads. It serves the workers' requests and turns the engine's events into tm actions.
 */
#ifndef PP_ENGINE_H
#define PP_ENGINE_H

/* child_init(PROC_MAIN): forks the engine process (never returns in the child). */
int pp_engine_fork(void);
/* Set while the engine process is being forked: its child_init() must keep the reader. */
extern int pp_engine_forking;

#endif

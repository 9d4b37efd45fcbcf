/*
 * The engine process as an OpenSIPS process: one extra process of the module's own
 * (proc_export_t), running ../common's pp_engine_main.
 */
#ifndef PP_ENGINE_PROC_H
#define PP_ENGINE_PROC_H

/* 1 from just before OpenSIPS forks the engine process until just after: this module's
 * child_init, run in the new process (PROC_FLAG_INITCHILD), keeps the request pipe's read
 * end there and only there. */
extern int pp_engine_forking;

int pp_engine_pre_fork(void);
int pp_engine_post_fork(void);
void pp_engine_proc(int rank);

#endif

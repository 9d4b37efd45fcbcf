/*
 * The pushpark module's parameters, counters and return codes, shared by its files.
 */
#ifndef PUSHPARK_MOD_H
#define PUSHPARK_MOD_H

#include "core/str.h"
#include "core/counters.h"

/* Script return values of pushpark_park() and pushpark_fork(). */
#define PP_RET_PARKED 1
#define PP_RET_ERROR (-1)
#define PP_RET_NO_DEVICE (-2)

/* modparams */
extern char *pp_config_path;       /* "config": the engine's JSON configuration file */
extern str pp_resume_route;        /* "resume_route" */
extern int pp_park_timeout;        /* "park_timeout" (ms), 0: the config file's */
extern int pp_reply_code;          /* "reply_code", 0: the engine's (config file) */
extern str pp_reply_reason;        /* "reply_reason" */
extern int pp_provisional_code;    /* "provisional_reply": 0 (off), 180 or 110 */
extern str pp_provisional_reason;  /* "provisional_reason" */
extern int pp_ipc_timeout;         /* "ipc_timeout" (ms) */
extern str pp_location_table;      /* "location_table": for second-device branches */

/* "push_registered": which push-capable contacts lookup() found pushpark_fork() pushes
 * instead of ringing them directly. */
#define PP_PUSH_REG_ALWAYS 0
#define PP_PUSH_REG_NO_LIVE 1 /* "no_live_connection": all but those on a live TCP/TLS */
#define PP_PUSH_REG_NEVER 2   /* none: push only when lookup() found nobody */
extern int pp_push_registered;

/* The park timeout in effect (modparam, else the engine's: pp_config_park_timeout_ms). */
extern int pp_effective_park_timeout;

/* pp_req_add (../common/pp_ipc.h) of a Kamailio str. */
#define pp_req_add_str(r, sp) pp_req_add((r), (sp)->s, (sp)->len)

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

#endif

/*
 * The pushpark module's parameters and statistics, shared by its files.
 */
#ifndef PUSHPARK_MOD_H
#define PUSHPARK_MOD_H

#include "str.h"
#include "statistics.h"

/* modparams (the Kamailio module's names where they mean the same) */
extern char *pp_config_path;       /* "config": the engine's JSON configuration file */
extern int pp_park_timeout;        /* "park_timeout" (ms), 0: the config file's */
extern int pp_reply_code;          /* "reply_code", 0: the engine's (config file) */
extern char *pp_reply_reason;      /* "reply_reason" */
extern int pp_provisional_code;    /* "provisional_reply": 0 (off), 180 or 110 */
extern char *pp_provisional_reason; /* "provisional_reason" */
extern int pp_ipc_timeout;         /* "ipc_timeout" (ms) */

/* The park timeout in effect (modparam, else the engine's: pp_config_park_timeout_ms). */
extern int pp_effective_park_timeout;

/* pp_req_add (../common/pp_ipc.h) of an OpenSIPS str. */
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

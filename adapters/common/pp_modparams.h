/*
 * The modparams every host's module takes, with the same names and meaning
 * (host-independent, see pp_host.h), and their check in mod_init. The host exports them
 * (its param_export_t) and keeps those of its own, and the reason phrases, whose type
 * (char * or str) its reply API wants.
 */
#ifndef PP_MODPARAMS_H
#define PP_MODPARAMS_H

extern char *pp_config_path;    /* "config": the engine's JSON configuration file */
extern int pp_park_timeout;     /* "park_timeout" (ms), 0: the config file's */
extern int pp_reply_code;       /* "reply_code", 0: the engine's (config file) */
extern int pp_provisional_code; /* "provisional_reply": 0 (off), 180 or 110 */
extern int pp_ipc_timeout;      /* "ipc_timeout" (ms) */
extern char *pp_push_registered_s; /* "push_registered", parsed into pp_push_registered */

/* "push_registered": which push-capable contacts lookup() found pushpark_fork() pushes
 * instead of ringing them directly. */
#define PP_PUSH_REG_ALWAYS 0
#define PP_PUSH_REG_NO_LIVE 1 /* "no_live_connection": all but those on a live TCP/TLS */
#define PP_PUSH_REG_NEVER 2   /* none: push only when lookup() found nobody */
extern int pp_push_registered;

/* Their rows in the host's param_export_t, with its type constants for an int and a
 * char * (Kamailio: PARAM_INT, PARAM_STRING; OpenSIPS: INT_PARAM, STR_PARAM). */
#define PP_MODPARAMS_EXPORT(INT, CHARS)                                    \
	{"config", CHARS, &pp_config_path}, {"park_timeout", INT, &pp_park_timeout}, \
			{"reply_code", INT, &pp_reply_code},                             \
			{"provisional_reply", INT, &pp_provisional_code},                \
			{"ipc_timeout", INT, &pp_ipc_timeout},                           \
			{"push_registered", CHARS, &pp_push_registered_s}

/* The park timeout in effect (modparam, else the engine's: pp_config_park_timeout_ms). */
extern int pp_effective_park_timeout;

/* mod_init, before the host forks: warns when the library is not the header's version,
 * checks the modparams above, loads the engine's config (pp_config_load) and sets
 * pp_effective_park_timeout. 0, or -1 logged. */
int pp_modparams_check(void);

/* The default phrase of a provisional_reply code when provisional_reason is not set. */
const char *pp_provisional_default_reason(int code);

#endif

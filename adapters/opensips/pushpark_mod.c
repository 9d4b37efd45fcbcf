/*
 * pushpark: OpenSIPS module glue. Parameters, script functions, statistics, module and
 * child initialisation. The work is in:
 *   pp_engine_proc.c  the engine process as an OpenSIPS process (proc_export_t)
 *   pp_register.c REGISTER bindings, Contact checks (400/555), Feature-Caps
 *   pp_mi.c       MI commands
 *   pp_sip.c      AOR and +sip.instance forms
 * and, shared with other hosts' modules, in ../common (see pp_host.h there): the worker
 * <-> engine-process IPC, the engine process's loop, its call table and log bridge.
 */
#include <string.h>

#include "dprint.h"
#include "sr_module.h"
#include "pushpark.h"
#include "pp_config.h"
#include "pp_engine_proc.h"
#include "pp_ipc.h"
#include "pp_mi.h"
#include "pp_register.h"
#include "pushpark_mod.h"

/* The engine's limit for a park timeout. */
#define PP_MAX_PARK_TIMEOUT_MS 3600000
/* A SIP worker blocks this long at most on the engine: longer would stall the proxy. */
#define PP_MAX_IPC_TIMEOUT_MS 10000

char *pp_config_path = NULL;
int pp_park_timeout = 0;
int pp_reply_code = 0;
char *pp_reply_reason = NULL;
int pp_provisional_code = 0;
char *pp_provisional_reason = NULL;
int pp_ipc_timeout = 1000;
int pp_effective_park_timeout = 0;

stat_var *pp_st_parked;
stat_var *pp_st_no_device;
stat_var *pp_st_park_errors;
stat_var *pp_st_resumed;
stat_var *pp_st_rejected;
stat_var *pp_st_cancelled;
stat_var *pp_st_branches;
stat_var *pp_st_registers;
stat_var *pp_st_forked;
stat_var *pp_st_late_wakes;
stat_var *pp_st_register_refused;

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

static int w_pushpark_register(struct sip_msg *msg)
{
	return pp_register(msg);
}

static int w_pushpark_check_provider(struct sip_msg *msg)
{
	return pp_check_provider(msg);
}

static const cmd_export_t cmds[] = {
		{"pushpark_register", (cmd_function)w_pushpark_register, {{0, 0, 0}}, REQUEST_ROUTE},
		{"pushpark_check_provider", (cmd_function)w_pushpark_check_provider, {{0, 0, 0}},
				REQUEST_ROUTE},
		{0, 0, {{0, 0, 0}}, 0}};

static const dep_export_t deps = {
		{
				{MOD_TYPE_DEFAULT, "signaling", DEP_ABORT},
				{MOD_TYPE_NULL, NULL, 0},
		},
		{
				{NULL, NULL},
		},
};

static const param_export_t params[] = {
		{"config", STR_PARAM, &pp_config_path},
		{"park_timeout", INT_PARAM, &pp_park_timeout},
		{"reply_code", INT_PARAM, &pp_reply_code},
		{"reply_reason", STR_PARAM, &pp_reply_reason},
		{"provisional_reply", INT_PARAM, &pp_provisional_code},
		{"provisional_reason", STR_PARAM, &pp_provisional_reason},
		{"ipc_timeout", INT_PARAM, &pp_ipc_timeout},
		{0, 0, 0}};

static const stat_export_t mod_stats[] = {
		{"parked", 0, &pp_st_parked},
		{"park_no_device", 0, &pp_st_no_device},
		{"park_errors", 0, &pp_st_park_errors},
		{"resumed", 0, &pp_st_resumed},
		{"rejected", 0, &pp_st_rejected},
		{"cancelled", 0, &pp_st_cancelled},
		{"branches_added", 0, &pp_st_branches},
		{"registers", 0, &pp_st_registers},
		{"forked", 0, &pp_st_forked},
		{"late_wakes", 0, &pp_st_late_wakes},
		{"registers_refused", 0, &pp_st_register_refused},
		{0, 0, 0}};

/* The engine process: forked before the SIP workers, initialised like them. */
static const proc_export_t procs[] = {
		{"pushpark engine", pp_engine_pre_fork, pp_engine_post_fork, pp_engine_proc, 1,
				PROC_FLAG_INITCHILD},
		{0, 0, 0, 0, 0, 0}};

struct module_exports exports = {
		"pushpark",       /* module name */
		MOD_TYPE_DEFAULT, /* class of this module */
		MODULE_VERSION,
		DEFAULT_DLFLAGS,  /* dlopen flags */
		0,                /* load function */
		&deps,            /* module dependencies */
		cmds,             /* exported functions */
		0,                /* exported async functions */
		params,           /* exported parameters */
		mod_stats,        /* exported statistics */
		pp_mi_cmds,       /* exported MI functions */
		0,                /* exported pseudo-variables */
		0,                /* exported transformations */
		procs,            /* extra processes */
		0,                /* module pre-initialization function */
		mod_init,         /* module initialization function */
		0,                /* response handling function */
		mod_destroy,      /* destroy function */
		child_init,       /* per-child init function */
		0                 /* reload confirm function */
};

/* The engine's config, checked before OpenSIPS forks (see pp_config_load); its park
 * timeout unless park_timeout says. */
static int pp_check_config(void)
{
	if(pp_config_path == NULL || *pp_config_path == '\0') {
		LM_ERR("modparam(\"pushpark\", \"config\", \"/path/to/pushpark.json\") is required\n");
		return -1;
	}
	if(pp_config_load(pp_config_path) < 0)
		return -1;
	pp_effective_park_timeout =
			pp_park_timeout > 0 ? pp_park_timeout : (int)pp_config_park_timeout_ms;
	return 0;
}

static int mod_init(void)
{
	if(strcmp(pushpark_version(), PUSHPARK_VERSION_STRING) != 0)
		LM_WARN("libpushpark %s, header %s\n", pushpark_version(), PUSHPARK_VERSION_STRING);
	if(pp_park_timeout < 0 || pp_park_timeout > PP_MAX_PARK_TIMEOUT_MS) {
		LM_ERR("park_timeout %d: 0 (the engine's park.timeout_ms) to %d ms\n", pp_park_timeout,
				PP_MAX_PARK_TIMEOUT_MS);
		return -1;
	}
	if(pp_ipc_timeout <= 0 || pp_ipc_timeout > PP_MAX_IPC_TIMEOUT_MS) {
		LM_ERR("ipc_timeout %d: 1 to %d ms\n", pp_ipc_timeout, PP_MAX_IPC_TIMEOUT_MS);
		return -1;
	}
	if(pp_reply_code && (pp_reply_code < 300 || pp_reply_code > 699)) {
		LM_ERR("reply_code %d: 0 (the engine's) or 300 to 699\n", pp_reply_code);
		return -1;
	}
	if(pp_provisional_code != 0 && pp_provisional_code != 180
			&& pp_provisional_code != 110) {
		LM_ERR("provisional_reply: 0 (off), 180 or 110\n");
		return -1;
	}
	if(pp_provisional_reason == NULL || *pp_provisional_reason == '\0')
		pp_provisional_reason = pp_provisional_code == 110 ? "Push sent" : "Ringing";
	if(pp_check_config() < 0 || pp_register_init() < 0)
		return -1;
	if(pp_ipc_init() < 0)
		return -1;
	return 0;
}

/* Every process but the engine's drops the request pipe's read end. */
static int child_init(int rank)
{
	if(!pp_engine_forking)
		pp_ipc_close_reader();
	return 0;
}

static void mod_destroy(void)
{
	pp_ipc_set_ready(0);
}

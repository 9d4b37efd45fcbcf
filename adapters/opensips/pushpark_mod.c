/*
 * pushpark: OpenSIPS module glue. Parameters, script functions, statistics, module and
 * child initialisation. The work is in:
 *   pp_engine_proc.c  the engine process as an OpenSIPS process (proc_export_t)
 *   pp_tm.c       parking and forking in tm, and the woken devices' branches
 *   pp_dset.c     destination sets from usrloc
 *   pp_late.c     INVITE + CANCEL to a device that woke after its call ended
 *   pp_register.c the registrar side's OpenSIPS glue (signaling, Contact parsing)
 *   pp_mi.c       MI commands
 * and, shared with other hosts' modules, in ../common (see pp_host.h there): the worker
 * <-> engine-process IPC, the engine process's loop, its call table and log bridge, the
 * registrar side (pp_registrar: Contact checks, Feature-Caps, bindings), the AOR form,
 * the shared modparams' checks and the statistics.
 */
#include <string.h>

#include "dprint.h"
#include "sr_module.h"
#include "pushpark.h"
#include "pp_config.h"
#include "pp_engine_proc.h"
#include "pp_ipc.h"
#include "pp_late.h"
#include "pp_mi.h"
#include "pp_modparams.h"
#include "pp_registrar.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

char *pp_reply_reason = NULL;
char *pp_provisional_reason = NULL;
char *pp_location_table = "location";

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

static int w_pushpark_park(struct sip_msg *msg)
{
	return pp_tm_park(msg);
}

static int w_pushpark_fork(struct sip_msg *msg, str *aor)
{
	return pp_tm_fork(msg, aor);
}

static int w_pushpark_register(struct sip_msg *msg)
{
	return pp_register(msg);
}

static int w_pushpark_check_provider(struct sip_msg *msg)
{
	return pp_check_provider(msg);
}

static const cmd_export_t cmds[] = {
		{"pushpark_park", (cmd_function)w_pushpark_park, {{0, 0, 0}}, REQUEST_ROUTE},
		{"pushpark_fork", (cmd_function)w_pushpark_fork,
				{{CMD_PARAM_STR | CMD_PARAM_OPT, 0, 0}, {0, 0, 0}}, REQUEST_ROUTE},
		{"pushpark_register", (cmd_function)w_pushpark_register, {{0, 0, 0}}, REQUEST_ROUTE},
		{"pushpark_check_provider", (cmd_function)w_pushpark_check_provider, {{0, 0, 0}},
				REQUEST_ROUTE},
		{0, 0, {{0, 0, 0}}, 0}};

static const dep_export_t deps = {
		{
				{MOD_TYPE_DEFAULT, "signaling", DEP_ABORT},
				{MOD_TYPE_DEFAULT, "tm", DEP_ABORT},
				{MOD_TYPE_DEFAULT, "usrloc", DEP_ABORT},
				{MOD_TYPE_NULL, NULL, 0},
		},
		{
				{NULL, NULL},
		},
};

static const param_export_t params[] = {
		PP_MODPARAMS_EXPORT(INT_PARAM, STR_PARAM),
		{"reply_reason", STR_PARAM, &pp_reply_reason},
		{"provisional_reason", STR_PARAM, &pp_provisional_reason},
		{"location_table", STR_PARAM, &pp_location_table},
		{0, 0, 0}};

/* The engine process: forked before the SIP workers, initialised like them, and with
 * the script (the branch route of a call it adds branches to runs there). */
static const proc_export_t procs[] = {
		{"pushpark engine", pp_engine_pre_fork, pp_engine_post_fork, pp_engine_proc, 1,
				PROC_FLAG_INITCHILD | PROC_FLAG_NEEDS_SCRIPT},
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
		pp_stat_exports,  /* exported statistics */
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

static int mod_init(void)
{
	if(pp_modparams_check() < 0 || pp_registrar_init() < 0 || pp_tm_init() < 0
			|| pp_late_init() < 0)
		return -1;
	if(pp_provisional_reason == NULL || *pp_provisional_reason == '\0')
		pp_provisional_reason = (char *)pp_provisional_default_reason(pp_provisional_code);
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

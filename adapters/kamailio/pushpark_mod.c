/*
 * pushpark: Kamailio module glue. Parameters, script and KEMI functions, statistics,
 * module and child initialisation. The work is in:
 *   pp_tm.c       suspending/forking INVITEs, resuming/rejecting/extending them (tm)
 *   pp_late.c     INVITE + CANCEL to a device woken for a call that already ended
 *   pp_register.c REGISTER bindings, Contact checks (400/555), Feature-Caps
 *   pp_engine_proc.c  the engine process as a Kamailio process
 *   pp_rpc.c      RPC commands
 * and, shared with other hosts' modules, in ../common (see pp_host.h there): the worker
 * <-> engine-process IPC, the engine process's loop, its call table and log bridge, the
 * registrar side, the shared modparams' checks and the statistics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dprint.h"
#include "core/kemi.h"
#include "core/mod_fix.h"
#include "core/pt.h"
#include "core/cfg/cfg_struct.h"
#include "core/sr_module.h"
#include "pushpark.h"
#include "pp_config.h"
#include "pp_engine_proc.h"
#include "pp_ipc.h"
#include "pp_late.h"
#include "pp_modparams.h"
#include "pp_registrar.h"
#include "pp_rpc.h"
#include "pp_sip.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

MODULE_VERSION

str pp_resume_route = str_init("PUSHPARK_RESUME");
str pp_reply_reason = STR_NULL;
str pp_provisional_reason = STR_NULL;
str pp_location_table = str_init("location");

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

static int w_pushpark_park(sip_msg_t *msg, char *p1, char *p2)
{
	return pp_tm_park(msg);
}

static int w_pushpark_fork(sip_msg_t *msg, char *p1, char *p2)
{
	str aor;

	if(p1 == NULL)
		return pp_tm_fork(msg, NULL);
	if(fixup_get_svalue(msg, (gparam_t *)p1, &aor) < 0 || aor.len <= 0) {
		LM_ERR("pushpark_fork(): no AOR\n");
		return PP_RET_ERROR;
	}
	return pp_tm_fork(msg, &aor);
}

static int ki_pushpark_fork(sip_msg_t *msg)
{
	return pp_tm_fork(msg, NULL);
}

static int ki_pushpark_fork_aor(sip_msg_t *msg, str *aor)
{
	return pp_tm_fork(msg, aor);
}

static int w_pushpark_register(sip_msg_t *msg, char *p1, char *p2)
{
	return pp_register(msg);
}

static int w_pushpark_check_provider(sip_msg_t *msg, char *p1, char *p2)
{
	return pp_check_provider(msg);
}

static cmd_export_t cmds[] = {
		{"pushpark_park", (cmd_function)w_pushpark_park, 0, 0, 0, REQUEST_ROUTE},
		{"pushpark_fork", (cmd_function)w_pushpark_fork, 0, 0, 0, REQUEST_ROUTE},
		{"pushpark_fork", (cmd_function)w_pushpark_fork, 1, fixup_spve_null,
				fixup_free_spve_null, REQUEST_ROUTE},
		{"pushpark_register", (cmd_function)w_pushpark_register, 0, 0, 0, REQUEST_ROUTE},
		{"pushpark_check_provider", (cmd_function)w_pushpark_check_provider, 0, 0, 0,
				REQUEST_ROUTE},
		{0, 0, 0, 0, 0, 0}};

static param_export_t params[] = {
		PP_MODPARAMS_EXPORT(PARAM_INT, PARAM_STRING),
		{"resume_route", PARAM_STR, &pp_resume_route},
		{"reply_reason", PARAM_STR, &pp_reply_reason},
		{"provisional_reason", PARAM_STR, &pp_provisional_reason},
		{"location_table", PARAM_STR, &pp_location_table},
		{0, 0, 0}};

struct module_exports exports = {
		"pushpark",      /* module name */
		DEFAULT_DLFLAGS, /* dlopen flags */
		cmds,            /* exported functions */
		params,          /* exported parameters */
		pp_rpc_cmds,     /* RPC method exports */
		0,               /* exported pseudo-variables */
		0,               /* response handling function */
		mod_init,        /* module initialization function */
		child_init,      /* per-child init function */
		mod_destroy      /* module destroy function */
};

static int mod_init(void)
{
	if(pp_modparams_check() < 0 || pp_registrar_init() < 0)
		return -1;
	if(pp_provisional_reason.len == 0) {
		pp_provisional_reason.s = (char *)pp_provisional_default_reason(pp_provisional_code);
		pp_provisional_reason.len = strlen(pp_provisional_reason.s);
	}
	if(pp_tm_init() < 0 || pp_late_init() < 0 || pp_ipc_init() < 0)
		return -1;
	if(register_module_stats(exports.name, pp_stat_exports) != 0) {
		LM_ERR("cannot register statistics\n");
		return -1;
	}
	register_procs(1);
	cfg_register_child(1);
	return 0;
}

static int child_init(int rank)
{
	if(rank == PROC_INIT)
		return 0;
	if(rank == PROC_MAIN)
		return pp_engine_fork();
	if(!pp_engine_forking)
		pp_ipc_close_reader();
	return 0;
}

static void mod_destroy(void)
{
	pp_ipc_set_ready(0);
}

static sr_kemi_t sr_kemi_pushpark_exports[] = {
		{str_init("pushpark"), str_init("pushpark_park"), SR_KEMIP_INT, pp_tm_park,
				{SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
						SR_KEMIP_NONE}},
		{str_init("pushpark"), str_init("pushpark_fork"), SR_KEMIP_INT, ki_pushpark_fork,
				{SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
						SR_KEMIP_NONE}},
		{str_init("pushpark"), str_init("pushpark_fork_aor"), SR_KEMIP_INT,
				ki_pushpark_fork_aor,
				{SR_KEMIP_STR, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
						SR_KEMIP_NONE}},
		{str_init("pushpark"), str_init("pushpark_register"), SR_KEMIP_INT, pp_register,
				{SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
						SR_KEMIP_NONE}},
		{str_init("pushpark"), str_init("pushpark_check_provider"), SR_KEMIP_INT,
				pp_check_provider,
				{SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
						SR_KEMIP_NONE}},
		{{0, 0}, {0, 0}, 0, NULL, {0, 0, 0, 0, 0, 0}}};

int mod_register(char *path, int *dlflags, void *p1, void *p2)
{
	sr_kemi_modules_add(sr_kemi_pushpark_exports);
	return 0;
}

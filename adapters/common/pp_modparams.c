/*
 * The modparams every host's module takes (see pp_modparams.h).
 */
#include <string.h>

#include "pp_config.h"
#include "pp_host.h"
#include "pp_modparams.h"

/* The engine's limit for a park timeout; also keeps Kamailio's MS_TO_TICKS(timeout +
 * guard) in an int. */
#define PP_MAX_PARK_TIMEOUT_MS 3600000
/* A SIP worker blocks this long at most on the engine: longer would stall the proxy. */
#define PP_MAX_IPC_TIMEOUT_MS 10000

char *pp_config_path = NULL;
int pp_park_timeout = 0;
int pp_reply_code = 0;
int pp_provisional_code = 0;
int pp_ipc_timeout = 1000;
char *pp_push_registered_s = "no_live_connection";
int pp_push_registered = PP_PUSH_REG_NO_LIVE;
int pp_effective_park_timeout = 0;

/* The engine's config, checked before the host forks (see pp_config_load); its park
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

int pp_modparams_check(void)
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
	if(strcmp(pp_push_registered_s, "always") == 0)
		pp_push_registered = PP_PUSH_REG_ALWAYS;
	else if(strcmp(pp_push_registered_s, "no_live_connection") == 0)
		pp_push_registered = PP_PUSH_REG_NO_LIVE;
	else if(strcmp(pp_push_registered_s, "never") == 0)
		pp_push_registered = PP_PUSH_REG_NEVER;
	else {
		LM_ERR("push_registered: always, no_live_connection or never\n");
		return -1;
	}
	if(pp_provisional_code != 0 && pp_provisional_code != 180
			&& pp_provisional_code != 110) {
		LM_ERR("provisional_reply: 0 (off), 180 or 110\n");
		return -1;
	}
	return pp_check_config();
}

const char *pp_provisional_default_reason(int code)
{
	return code == 110 ? "Push sent" : "Ringing";
}

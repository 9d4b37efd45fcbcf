/*
 * The engine's configuration file (see pp_config.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pp_config.h"
#include "pp_host.h"

char *pp_read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	long len;

	if(f == NULL) {
		LM_ERR("cannot open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if(fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0
			&& (buf = malloc(len + 1)) != NULL) {
		if(fread(buf, 1, len, f) == (size_t)len) {
			buf[len] = '\0';
		} else {
			free(buf);
			buf = NULL;
		}
	}
	if(buf == NULL)
		LM_ERR("cannot read %s\n", path);
	fclose(f);
	return buf;
}

pushpark_contact_rules *pp_contact_rules = NULL;
uint32_t pp_config_park_timeout_ms = 0;
int pp_config_clustered = 0;

int pp_config_load(const char *path)
{
	char *json;
	int ret = -1;

	if(path == NULL || *path == '\0') {
		LM_ERR("the engine's config file is required (modparam \"config\")\n");
		return -1;
	}
	json = pp_read_file(path);
	if(json == NULL)
		return -1;
	if(pushpark_config_check_files(json) == PUSHPARK_OK
			&& pushpark_contact_rules_new(json, &pp_contact_rules) == PUSHPARK_OK
			&& pushpark_config_park_timeout(json, &pp_config_park_timeout_ms) == PUSHPARK_OK
			&& pushpark_config_clustered(json, &pp_config_clustered) == PUSHPARK_OK)
		ret = 0;
	else
		LM_ERR("%s: %s\n", path, pushpark_last_error());
	free(json);
	return ret;
}

int pp_contact_pushable(const char *uri, int len)
{
	char buf[PP_CONTACT_MAX];
	const char *provider = NULL;

	if(len <= 0 || len >= PP_CONTACT_MAX || pp_contact_rules == NULL)
		return 0;
	memcpy(buf, uri, len);
	buf[len] = '\0';
	return pushpark_contact_check(pp_contact_rules, buf, &provider) == PUSHPARK_OK
		   && provider != NULL;
}

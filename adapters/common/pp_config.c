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

/*
 * Small SIP helpers (see pp_sip.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "pp_sip.h"

int pp_aor(str *uri, char *buf, str *aor)
{
	struct sip_uri u;
	int n, i;

	if(parse_uri(uri->s, uri->len, &u) < 0) {
		LM_ERR("bad URI: %.*s\n", uri->len, uri->s);
		return -1;
	}
	if(u.host.len <= 0)
		return -1;
	if(u.user.len > 0)
		n = snprintf(buf, PP_AOR_MAX, "sip:%.*s@%.*s", u.user.len, u.user.s, u.host.len,
				u.host.s);
	else
		n = snprintf(buf, PP_AOR_MAX, "sip:%.*s", u.host.len, u.host.s);
	if(n < 0 || n >= PP_AOR_MAX)
		return -1;
	/* Host names are case-insensitive; the user part is not. */
	for(i = n - u.host.len; i < n; i++)
		buf[i] = tolower((unsigned char)buf[i]);
	aor->s = buf;
	aor->len = n;
	return 0;
}

void pp_instance_norm(str *in, char *out)
{
	int i, n = 0;
	char c;

	for(i = 0; i < in->len; i++) {
		c = in->s[i];
		if(c == '"' || c == '<' || c == '>' || isspace((unsigned char)c))
			continue;
		if(n == PP_INSTANCE_MAX - 1) {
			n = 0;
			break;
		}
		out[n++] = c;
	}
	out[n] = '\0';
	if(strncasecmp(out, "urn:uuid:", 9) == 0)
		for(i = 0; i < n; i++)
			out[i] = tolower((unsigned char)out[i]);
}

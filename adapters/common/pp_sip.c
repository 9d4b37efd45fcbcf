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

int pp_req_add_call(pp_req_t *r, struct sip_msg *msg, str *uri)
{
	char aor_buf[PP_AOR_MAX];
	str aor, empty = STR_NULL;
	struct to_body *from;

	if(parse_headers(msg, HDR_CALLID_F | HDR_FROM_F, 0) < 0 || msg->callid == NULL
			|| msg->from == NULL || parse_from_header(msg) < 0) {
		LM_ERR("INVITE without Call-ID or From\n");
		return -1;
	}
	from = get_from(msg);
	if(pp_aor(uri, aor_buf, &aor) < 0)
		return -1;
	if(pp_req_add_str(r, &msg->callid->body) < 0 || pp_req_add_str(r, &aor) < 0
			|| pp_req_add_str(r, &from->uri) < 0
			|| pp_req_add_str(r, from->display.len > 0 ? &from->display : &empty) < 0) {
		LM_ERR("INVITE too large to park\n");
		return -1;
	}
	return 0;
}

int pp_req_add_fork_contact(pp_req_t *r, str *uri, str *instance, int ringing)
{
	int n = (r->h.nstrs - 4) / 2;

	if(n >= PP_FORK_MAX_CONTACTS || r->h.size + uri->len + instance->len + 2 > PP_REQ_MAX)
		return -1;
	pp_req_add_str(r, uri);
	pp_req_add_str(r, instance);
	if(ringing)
		r->h.ringing |= 1u << n;
	return 0;
}

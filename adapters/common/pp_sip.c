/*
 * Small SIP helpers (see pp_sip.h).
 */
#include <ctype.h>
#include <stdio.h>

#include "pp_modparams.h"
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

int pp_instance_is(str *instance, const char *device)
{
	int matches = 0;

	if(pushpark_instance_matches(device, instance->s, instance->len, &matches) != PUSHPARK_OK)
		return 0;
	return matches;
}

int pp_req_invite(pp_req_t *r, int op, struct sip_msg *msg, str *uri, const char *fn)
{
	char aor_buf[PP_AOR_MAX];
	str aor, empty = STR_NULL;
	struct to_body *from;

	if(msg->first_line.type != SIP_REQUEST || msg->REQ_METHOD != METHOD_INVITE) {
		LM_ERR("%s() takes INVITEs only\n", fn);
		return -1;
	}
	pp_req_init(r, op);
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

int pp_reason_header(char *buf, int code, const char *text)
{
	int n, i;

	n = snprintf(buf, PP_CANCEL_REASON_MAX, "Reason: SIP;cause=%d", code);
	if(*text) {
		n += snprintf(buf + n, PP_CANCEL_REASON_MAX - n, ";text=\"");
		for(i = 0; text[i] && n < PP_CANCEL_REASON_MAX - 4; i++)
			if(text[i] != '"' && text[i] != '\\' && (unsigned char)text[i] >= 0x20)
				buf[n++] = text[i];
		buf[n++] = '"';
	}
	buf[n++] = '\r';
	buf[n++] = '\n';
	return n;
}

int pp_req_send(struct sip_msg *msg, pp_req_t *r, uint64_t host_ref)
{
	const char *done = r->h.op == PP_OP_FORK ? "forked" : "parked";
	str *callid = &msg->callid->body;
	pp_rpl_t rpl;

	r->h.host_ref = host_ref;
	r->h.timeout_ms = (uint32_t)pp_park_timeout;
	if(pp_call(r, pp_ipc_timeout, &rpl) < 0) /* logged */
		return pp_req_failed();
	if(rpl.result == PUSHPARK_ERR_NO_DEVICE) {
		update_stat(pp_st_no_device, 1);
		return PP_RET_NO_DEVICE;
	}
	if(rpl.result != PUSHPARK_OK) {
		LM_WARN("call %.*s not %s: %s\n", callid->len, callid->s, done,
				pushpark_result_name(rpl.result));
		return pp_req_failed();
	}
	update_stat(r->h.op == PP_OP_FORK ? pp_st_forked : pp_st_parked, 1);
	LM_DBG("call %.*s %s (%llx, park id %llu)\n", callid->len, callid->s, done,
			(unsigned long long)host_ref, (unsigned long long)rpl.park_id);
	return PP_RET_PARKED;
}

int pp_req_failed(void)
{
	update_stat(pp_st_park_errors, 1);
	return PP_RET_ERROR;
}

/*
 * The registrar side: handing accepted REGISTER bindings to the engine, and RFC 8599's
 * pn-provider check (555) and Feature-Caps.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/data_lump_rpl.h"
#include "core/dprint.h"
#include "core/parser/contact/parse_contact.h"
#include "core/parser/parse_expires.h"
#include "core/parser/parse_param.h"
#include "core/parser/parse_to.h"
#include "core/parser/parse_uri.h"
#include "core/ut.h"
#include "modules/sl/sl.h"
#include "pp_ipc.h"
#include "pp_register.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

/* Registrar default when neither the Contact nor the request says. */
#define PP_DEFAULT_EXPIRES 3600

static sl_api_t slb;

int pp_register_init(void)
{
	if(sl_load_api(&slb) < 0) {
		LM_ERR("the sl module is required\n");
		return -1;
	}
	return 0;
}

/* The providers the engine pushes through (RFC 8599 pn-provider values). */
static int pp_provider_supported(str *p)
{
	return (p->len == 4 && strncasecmp(p->s, "apns", 4) == 0)
		   || (p->len == 8 && strncasecmp(p->s, "apns.dev", 8) == 0);
}

/* The Contact URI's pn-provider, if any: 1 found (*prov set), 0 none, -1 bad URI. */
static int pp_pn_provider(contact_t *c, str *prov)
{
	struct sip_uri u;
	param_hooks_t hooks;
	param_t *params = NULL, *p;
	str s;
	int found = 0;

	if(parse_uri(c->uri.s, c->uri.len, &u) < 0)
		return -1;
	if(u.params.len <= 0)
		return 0;
	s = u.params;
	if(parse_params(&s, CLASS_ANY, &hooks, &params) < 0)
		return -1;
	for(p = params; p; p = p->next) {
		if(p->name.len == 11 && strncasecmp(p->name.s, "pn-provider", 11) == 0) {
			*prov = p->body;
			found = 1;
			break;
		}
	}
	free_params(params);
	return found;
}

static int pp_contacts(sip_msg_t *msg)
{
	if(parse_contact_headers(msg) < 0) {
		LM_ERR("bad Contact header\n");
		return -1;
	}
	return 0;
}

#define PP_FOREACH_CONTACT(msg, h, c)                                   \
	for(h = (msg)->contact; h; h = h->next)                             \
		if(h->type == HDR_CONTACT_T && h->parsed)                       \
			for(c = ((contact_body_t *)h->parsed)->contacts; c; c = c->next)

int pp_check_provider(sip_msg_t *msg)
{
	static str reason = str_init("Push Notification Service Not Supported");
	char hdr[128];
	struct hdr_field *h;
	contact_t *c;
	str prov, caps = STR_NULL;
	int r, n;

	if(pp_contacts(msg) < 0)
		return -2;
	PP_FOREACH_CONTACT(msg, h, c)
	{
		r = pp_pn_provider(c, &prov);
		if(r < 0) {
			LM_ERR("bad Contact URI: %.*s\n", c->uri.len, c->uri.s);
			return -2;
		}
		if(r == 0)
			continue;
		if(!pp_provider_supported(&prov)) {
			LM_INFO("REGISTER with unsupported pn-provider \"%.*s\": 555\n", prov.len,
					prov.s);
			if(slb.freply(msg, 555, &reason) < 0)
				LM_ERR("cannot send 555\n");
			return -1;
		}
		caps = prov;
	}
	if(caps.len > 0) {
		/* RFC 8599 4.1.2: the 2xx to a REGISTER with push parameters names the PNS. */
		n = snprintf(hdr, sizeof(hdr), "Feature-Caps: +sip.pns=\"%.*s\"\r\n", caps.len,
				caps.s);
		if(n < 0 || n >= (int)sizeof(hdr)
				|| add_lump_rpl(msg, hdr, n, LUMP_RPL_HDR) == NULL) {
			LM_ERR("cannot add Feature-Caps\n");
			return -2;
		}
	}
	return 1;
}

static uint32_t pp_expires(sip_msg_t *msg, contact_t *c)
{
	unsigned int e;

	if(c->expires && c->expires->body.len > 0
			&& str2int(&c->expires->body, &e) == 0)
		return e;
	if(msg->expires && (msg->expires->parsed || parse_expires(msg->expires) == 0)
			&& ((exp_body_t *)msg->expires->parsed)->valid)
		return ((exp_body_t *)msg->expires->parsed)->val;
	return PP_DEFAULT_EXPIRES;
}

int pp_register(sip_msg_t *msg)
{
	char aor_buf[PP_AOR_MAX];
	struct hdr_field *h;
	contact_t *c;
	pp_req_t r;
	str aor, inst;
	int sent = 0, failed = 0;

	if(msg->first_line.type != SIP_REQUEST || msg->REQ_METHOD != METHOD_REGISTER) {
		LM_ERR("pushpark_register() takes REGISTERs only\n");
		return -1;
	}
	if(parse_to_header(msg) < 0 || pp_aor(&get_to(msg)->uri, aor_buf, &aor) < 0) {
		LM_ERR("REGISTER without a usable To\n");
		return -1;
	}
	if(pp_contacts(msg) < 0)
		return -1;
	if(msg->contact && msg->contact->parsed
			&& ((contact_body_t *)msg->contact->parsed)->star) {
		/* RFC 3261 10.2.2 "Contact: *" (only valid with expires 0): every binding goes,
		 * the push devices too. */
		pp_req_init(&r, PP_OP_REMOVE_ALL);
		if(pp_req_add(&r, &aor) < 0 || pp_send(&r) < 0)
			return -1;
		update_stat(pp_st_registers, 1);
		return 1;
	}
	PP_FOREACH_CONTACT(msg, h, c)
	{
		pp_req_init(&r, PP_OP_REGISTER);
		r.h.expires = pp_expires(msg, c);
		if(pp_req_add(&r, &aor) < 0 || pp_req_add(&r, &c->uri) < 0) {
			failed++;
			continue;
		}
		if(c->instance && c->instance->body.len > 0) {
			/* +sip.instance="<urn:uuid:...>": the engine wants the value unquoted. */
			inst = c->instance->body;
			if(inst.len >= 2 && inst.s[0] == '"' && inst.s[inst.len - 1] == '"') {
				inst.s++;
				inst.len -= 2;
			}
			if(pp_req_add(&r, &inst) < 0) {
				failed++;
				continue;
			}
		}
		if(pp_send(&r) < 0)
			failed++;
		else
			sent++;
	}
	if(sent)
		update_stat(pp_st_registers, sent);
	if(failed) {
		LM_WARN("%d binding(s) of %.*s not handed to the engine\n", failed, aor.len, aor.s);
		return -1;
	}
	return 1;
}

/*
 * Late wake (see pp_late.h). iOS makes a woken VoIP app report an incoming call at once;
 * if the call is over when the app registers, nothing else would end what it shows. The
 * engine process looks the device up in usrloc and sends it, with tm's UAC, the INVITE
 * of the ended call and a CANCEL whose Reason says how it ended. RFC 3261 9.1: a CANCEL
 * waits for a provisional reply; tm sends it on the first one, with the Reason saved in
 * the transaction (t->uas.cancel_reas, as for a CANCEL that arrives early).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/dprint.h"
#include "core/mem/shm_mem.h"
#include "core/socket_info.h"
#include "core/ut.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"
#include "pp_late.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

#define PP_URI_MAX 1024

static struct tm_binds tmb;
static usrloc_api_t ul;
static udomain_t *location = NULL;

int pp_late_init(void)
{
	bind_usrloc_t bind_usrloc = (bind_usrloc_t)find_export("ul_bind_usrloc", 1, 0);

	if(load_tm_api(&tmb) < 0)
		return -1;
	if(bind_usrloc == NULL || bind_usrloc(&ul) < 0
			|| ul.register_udomain(pp_location_table.s, &location) < 0) {
		LM_INFO("usrloc not loaded: late wakes are only logged\n");
		location = NULL;
	}
	return 0;
}

/* Where to reach the device: its contact, Path, next hop and socket as usrloc has them. */
typedef struct pp_target {
	char uri[PP_URI_MAX];
	char path[PP_URI_MAX];
	char dst[PP_URI_MAX];
	struct socket_info *sock;
} pp_target_t;

static int pp_copy(char *buf, str *s)
{
	if(s->len >= PP_URI_MAX)
		return -1;
	memcpy(buf, s->s, s->len);
	buf[s->len] = '\0';
	return 0;
}

/* As lookup(): the first Path URI (the edge proxy that registered it), else the address
 * the REGISTER came from (received), else none (the contact itself). */
static int pp_next_hop(ucontact_t *c, char *dst)
{
	str hop = c->received;
	char *lt, *gt;

	if(c->path.len > 0 && (lt = memchr(c->path.s, '<', c->path.len)) != NULL
			&& (gt = memchr(lt, '>', c->path.s + c->path.len - lt)) != NULL) {
		hop.s = lt + 1;
		hop.len = gt - lt - 1;
	}
	return pp_copy(dst, &hop);
}

/* The AOR's contact of this device (+sip.instance), else the one modified last. */
static int pp_find_contact(const char *aor_uri, const char *device, pp_target_t *tg)
{
	struct sip_uri u;
	urecord_t *r;
	ucontact_t *c, *pick = NULL;
	str aor, uri;
	int ret = -1;

	uri.s = (char *)aor_uri;
	uri.len = strlen(aor_uri);
	if(parse_uri(uri.s, uri.len, &u) < 0)
		return -1;
	/* usrloc's key: user, or user@domain with use_domain. */
	aor.s = u.user.s;
	aor.len = ul.use_domain ? (int)(u.host.s + u.host.len - u.user.s) : u.user.len;
	ul.lock_udomain(location, &aor);
	if(ul.get_urecord(location, &aor, &r) == 0) {
		for(c = r->contacts; c; c = c->next) {
			if(c->expires != 0 && c->expires <= time(NULL))
				continue;
			if(pp_instance_is(&c->instance, device)) {
				pick = c;
				break;
			}
			if(pick == NULL || c->last_modified > pick->last_modified)
				pick = c;
		}
		if(pick && pp_copy(tg->uri, &pick->c) == 0 && pp_copy(tg->path, &pick->path) == 0
				&& pp_next_hop(pick, tg->dst) == 0) {
			tg->sock = pick->sock;
			ret = 0;
		}
	}
	ul.unlock_udomain(location, &aor);
	return ret;
}

/* The INVITE's final reply: what the tests and operators look for. */
static void pp_late_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	LM_INFO("late wake: call %s: INVITE to the woken device answered %d\n",
			(char *)*ps->param, ps->code);
	shm_free(*ps->param);
	*ps->param = NULL;
}

/* Reason: SIP;cause=<code>[;text="<reason>"] in the form tm keeps for early CANCELs. */
static struct cancel_reason *pp_reason(int code, const char *text)
{
	struct cancel_reason *cr;
	char hdr[PP_CANCEL_REASON_MAX];
	int n = pp_reason_header(hdr, code, text);

	cr = shm_malloc(sizeof(*cr) + n);
	if(cr == NULL) {
		SHM_MEM_ERROR;
		return NULL;
	}
	cr->cause = CANCEL_REAS_PACKED_HDRS;
	cr->u.packed_hdrs.s = (char *)(cr + 1);
	cr->u.packed_hdrs.len = n;
	memcpy(cr->u.packed_hdrs.s, hdr, n);
	return cr;
}

/* Marks the INVITE cancelled: tm sends the CANCEL (with the saved Reason) on the first
 * provisional reply, or now if one came already; the INVITE keeps retransmitting. */
static void pp_cancel_invite(unsigned int h, unsigned int l, struct cancel_reason *cr)
{
	struct cell *t = NULL, *orig = tmb.t_gett();
	struct cancel_info ci;

	if(tmb.t_lookup_ident(&t, h, l) < 0 || t == NULL) {
		shm_free(cr);
		tmb.t_sett(orig, T_BR_UNDEFINED);
		return;
	}
	t->uas.cancel_reas = cr; /* freed with the transaction */
	memset(&ci, 0, sizeof(ci));
	tmb.prepare_to_cancel(t, &ci.cancel_bitmap, 0);
	ci.reason = *cr;
	if(ci.cancel_bitmap)
		tmb.cancel_uacs(t, &ci, F_CANCEL_B_FORCE_RETR);
	tmb.unref_cell(t);
	tmb.t_sett(orig, T_BR_UNDEFINED);
}

int pp_host_late_wake(const pushpark_event *ev, int code, const char *reason)
{
	static str method = str_init("INVITE");
	const char *aor = pushpark_event_get_aor(ev);
	const char *call_id = pushpark_event_get_call_id(ev);
	const char *name = pushpark_event_get_caller_name(ev);
	char from_buf[PP_URI_MAX + 128], hdrs[2 * PP_URI_MAX];
	pp_target_t tg;
	str callid, fromtag, from, to, ruri, dst, headers;
	struct socket_info *si;
	struct cancel_reason *cr;
	uac_req_t uac_r;
	dlg_t *dlg = NULL;
	unsigned int h, l;
	char *cbp;
	int i, n, ret = -1;

	if(location == NULL || pp_find_contact(aor, pushpark_event_get_device(ev), &tg) < 0)
		return PP_LATE_NO_CONTACT;
	/* From: the caller (display name without quotes), with a tag of our own. */
	n = 0;
	if(*name) {
		from_buf[n++] = '"';
		for(i = 0; name[i] && n < 120; i++)
			if(name[i] != '"' && name[i] != '\\' && (unsigned char)name[i] >= 0x20)
				from_buf[n++] = name[i];
		n += snprintf(from_buf + n, sizeof(from_buf) - n, "\" ");
	}
	n += snprintf(from_buf + n, sizeof(from_buf) - n, "<%s>",
			pushpark_event_get_caller_uri(ev));
	si = tg.sock ? tg.sock : get_first_socket();
	/* The Path becomes the route set, as tm does for relayed requests. */
	if(n >= (int)sizeof(from_buf) || si == NULL
			|| snprintf(hdrs, sizeof(hdrs), "Contact: <sip:pushpark@%.*s:%.*s>\r\n%s%s%s",
					   si->address_str.len, si->address_str.s, si->port_no_str.len,
					   si->port_no_str.s, *tg.path ? "Route: " : "", tg.path,
					   *tg.path ? "\r\n" : "")
					   >= (int)sizeof(hdrs))
		return -1;
	callid.s = (char *)call_id;
	callid.len = strlen(call_id);
	from.s = from_buf;
	from.len = n;
	to.s = (char *)aor;
	to.len = strlen(aor);
	ruri.s = tg.uri;
	ruri.len = strlen(tg.uri);
	dst.s = tg.dst;
	dst.len = strlen(tg.dst);
	headers.s = hdrs;
	headers.len = strlen(hdrs);

	tmb.generate_fromtag(&fromtag, &callid, &ruri);
	if(tmb.new_dlg_uac(&callid, &fromtag, 1, &from, &to, &dlg) < 0)
		return -1;
	dlg->rem_target = ruri;
	if(dst.len > 0)
		dlg->dst_uri = dst;
	tmb.calculate_hooks(dlg);
	dlg->send_sock = tg.sock;

	cbp = shm_malloc(callid.len + 1);
	if(cbp == NULL) {
		SHM_MEM_ERROR;
		goto done;
	}
	memcpy(cbp, call_id, callid.len + 1);
	set_uac_req(&uac_r, &method, &headers, NULL, dlg, TMCB_LOCAL_COMPLETED, pp_late_cb,
			cbp);
	if(tmb.t_uac_with_ids(&uac_r, &h, &l) < 0) {
		shm_free(cbp);
		goto done;
	}
	ret = 0;
	cr = pp_reason(code, reason);
	if(cr)
		pp_cancel_invite(h, l, cr);
done:
	/* The strings are ours, not shm copies: free_dlg must not free them. */
	dlg->rem_target.s = NULL;
	dlg->dst_uri.s = NULL;
	tmb.free_dlg(dlg);
	return ret;
}

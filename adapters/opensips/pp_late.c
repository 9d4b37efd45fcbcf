/*
 * Late wake (see pp_late.h). iOS makes a woken VoIP app report an incoming call at once;
 * if the call is over when the app registers, nothing else would end what it shows. The
 * engine process looks the device up in usrloc and sends it, with tm's UAC, the INVITE
 * of the ended call (its Call-ID, caller and callee) and, on the first provisional reply
 * (RFC 3261 9.1: not before), a CANCEL whose Reason says how the call ended.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dprint.h"
#include "mem/shm_mem.h"
#include "socket_info.h"
#include "modules/tm/tm_load.h"
#include "pp_dset.h"
#include "pp_late.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

#define PP_URI_MAX 1024

static struct tm_binds tmb;

/* A late INVITE's transaction: the CANCEL to send, once. */
typedef struct pp_late {
	int cancelled;
	str reason;      /* the CANCEL's Reason header line */
	char call_id[1]; /* then the Reason line */
} pp_late_t;

int pp_late_init(void)
{
	return load_tm_api(&tmb);
}

/* Where to reach the device: its contact, next hop, Path and socket as usrloc has them
 * (copied: the record is unlocked before the INVITE is built). */
typedef struct pp_target {
	str uri, dst, path; /* NUL-terminated, in buf */
	char buf[3 * PP_URI_MAX];
	const struct socket_info *sock;
} pp_target_t;

static int pp_target_set(pp_target_t *tg, struct msg_branch *b)
{
	str *from[3] = {&b->uri, &b->dst_uri, &b->path};
	str *to[3] = {&tg->uri, &tg->dst, &tg->path};
	char *p = tg->buf;
	int i;

	if(b->uri.len + b->dst_uri.len + b->path.len + 3 > (int)sizeof(tg->buf))
		return -1;
	for(i = 0; i < 3; i++) {
		memcpy(p, from[i]->s, from[i]->len);
		to[i]->s = p;
		to[i]->len = from[i]->len;
		p += from[i]->len;
		*p++ = '\0';
	}
	tg->sock = b->force_send_socket;
	return 0;
}

/* The AOR's live contact of this device (+sip.instance), else the one modified last. */
static int pp_find_contact(const char *aor, const char *device, pp_target_t *tg)
{
	struct urecord *rec;
	struct msg_branch b;
	ucontact_t *c, *pick;
	time_t now = time(NULL);
	str key;
	int ret = -1;

	if(pp_ul_aor(aor, &key) < 0 || (rec = pp_ul_get(&key)) == NULL)
		return -1;
	if((pick = pp_device_contact(rec, device)) == NULL)
		for(c = rec->contacts; c; c = c->next)
			if(VALID_CONTACT(c, now) && (pick == NULL || c->last_modified > pick->last_modified))
				pick = c;
	if(pick && pp_contact_branch(pick, &b) == 0 && pp_target_set(tg, &b) == 0)
		ret = 0;
	pp_ul_release(rec, &key);
	return ret;
}

/* The call's state for the callbacks (shm: any process may get the replies), with
 * "Reason: SIP;cause=<code>[;text="<reason>"]". */
static pp_late_t *pp_late_new(const char *call_id, int code, const char *text)
{
	char hdr[PP_CANCEL_REASON_MAX];
	pp_late_t *l;
	int n = pp_reason_header(hdr, code, text), id_len = strlen(call_id);

	l = shm_malloc(sizeof(*l) + id_len + n);
	if(l == NULL) {
		LM_ERR("out of shm memory\n");
		return NULL;
	}
	l->cancelled = 0;
	memcpy(l->call_id, call_id, id_len + 1);
	l->reason.s = l->call_id + id_len + 1;
	l->reason.len = n;
	memcpy(l->reason.s, hdr, n);
	return l;
}

static void pp_late_free(void *l)
{
	shm_free(l);
}

/* A provisional reply: time for the CANCEL. The final reply: what the tests and
 * operators look for. */
static void pp_late_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	pp_late_t *l = *ps->param;

	if(type == TMCB_LOCAL_RESPONSE_OUT) {
		if(!l->cancelled) {
			l->cancelled = 1;
			tmb.t_cancel_trans(t, &l->reason);
		}
		return;
	}
	LM_INFO("late wake: call %s: INVITE to the woken device answered %d\n", l->call_id,
			ps->code);
}

int pp_host_late_wake(const pushpark_event *ev, int code, const char *reason)
{
	static str method = str_init("INVITE");
	const char *aor = pushpark_event_get_aor(ev);
	const char *call_id = pushpark_event_get_call_id(ev);
	const char *name = pushpark_event_get_caller_name(ev);
	char hdrs[2 * PP_URI_MAX];
	const struct socket_info *si;
	pp_target_t tg;
	pp_late_t *l;
	dlg_t *dlg = NULL;
	str callid, from, to, ruri, dname, none = {"", 0}, headers;
	int ret = -1;

	if(pp_find_contact(aor, pushpark_event_get_device(ev), &tg) < 0)
		return PP_LATE_NO_CONTACT;
	si = tg.sock ? tg.sock : get_first_socket();
	/* The Path becomes the route set, as for a relayed request. */
	if(si == NULL
			|| snprintf(hdrs, sizeof(hdrs), "Contact: <sip:pushpark@%.*s:%.*s>\r\n%s%s%s",
					   si->address_str.len, si->address_str.s, si->port_no_str.len,
					   si->port_no_str.s, tg.path.len ? "Route: " : "", tg.path.s,
					   tg.path.len ? "\r\n" : "")
					   >= (int)sizeof(hdrs))
		return -1;
	callid = (str){(char *)call_id, strlen(call_id)};
	from = (str){(char *)pushpark_event_get_caller_uri(ev), 0};
	from.len = strlen(from.s);
	to = (str){(char *)aor, strlen(aor)};
	ruri = tg.uri;
	dname = (str){(char *)name, strlen(name)};
	headers = (str){hdrs, strlen(hdrs)};

	if(tmb.new_auto_dlg_uac(&from, &to, &ruri, &callid, tg.sock, &dlg) < 0
			|| (dname.len > 0 && tmb.dlg_add_extra(dlg, &dname, &none) < 0))
		goto done;
	if(tg.dst.len)
		dlg->obp = tg.dst;
	/* The CANCEL waits for a provisional reply: let the callback see them. req_within
	 * sends in a confirmed dialog only; this one is ours, for one INVITE. */
	dlg->T_flags |= T_PASS_PROVISIONAL_FLAG;
	dlg->state = DLG_CONFIRMED;
	l = pp_late_new(call_id, code, reason);
	if(l == NULL)
		goto done;
	if(tmb.t_request_within(&method, &headers, NULL, dlg, pp_late_cb, l, pp_late_free) < 0)
		shm_free(l);
	else
		ret = 0;
done:
	/* free_dlg leaves obp (ours) alone. */
	if(dlg)
		tmb.free_dlg(dlg);
	return ret;
}

/*
 * tm glue: suspending an INVITE in a SIP worker (pushpark_park, pushpark_fork), and
 * resuming, rejecting, ringing and extending it from the engine process.
 */
#include <string.h>

#include "core/dprint.h"
#include "core/dset.h"
#include "core/globals.h"
#include "core/mem/pkg.h"
#include "core/resolve.h"
#include "core/tcp_conn.h"
#include "core/kemi.h"
#include "core/parser/parse_rr.h"
#include "core/parser/parse_uri.h"
#include "core/route.h"
#include "core/route_struct.h"
#include "core/sr_module.h"
#include "core/timer_ticks.h"
#include "modules/registrar/api.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"
#include "pushpark.h"
#include "pp_config.h"
#include "pp_ipc.h"
#include "pp_sip.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

/* tm's fr timer runs on a suspended transaction (the blind branch). It is pushed this
 * far past the park timeout so the engine's own reply always comes first; it only fires
 * when the engine process is stuck. */
#define PP_FR_GUARD_MS 5000

static struct tm_binds tmb;
static registrar_api_t regb;
static int have_registrar = 0;

/* Native config: the resume route's actions. KEMI: the route is a function name. */
static struct action *resume_action = NULL;

/* REJECT without script help: t_continue() runs this one-action route, which replies
 * with the code/reason set just before (the engine process is single-threaded). */
static int reject_code;
static char *reject_reason;
static int pp_reject_fn(sip_msg_t *msg, char *p1, char *p2);
static ksr_cmd_export_t reject_export = {
		"pushpark_reject", (cmd_function)pp_reject_fn, 0, 0, 0, 0, 0, 0};
static struct action reject_action;

#define REF_HASH(r) ((unsigned int)((r) >> 32))
#define REF_LABEL(r) ((unsigned int)((r)&0xffffffffu))

/* The usrloc table second-device lookups read. A native script's save()/lookup()
 * fixups register it; a KEMI script has no fixups, so it is registered here. */
static int pp_location_domain(void)
{
	bind_usrloc_t bind_usrloc = (bind_usrloc_t)find_export("ul_bind_usrloc", 1, 0);
	usrloc_api_t ul;
	udomain_t *d;

	if(bind_usrloc == NULL || bind_usrloc(&ul) < 0
			|| ul.register_udomain(pp_location_table.s, &d) < 0) {
		LM_ERR("cannot use usrloc table \"%.*s\"\n", pp_location_table.len,
				pp_location_table.s);
		return -1;
	}
	return 0;
}

int pp_tm_init(void)
{
	int ri;

	if(load_tm_api(&tmb) < 0) {
		LM_ERR("the tm module is required\n");
		return -1;
	}
	if(find_export("bind_registrar", 0, 0) != NULL && registrar_load_api(&regb) == 0
			&& pp_location_domain() == 0)
		have_registrar = 1;
	else
		LM_INFO("registrar not loaded: a second device cannot join a ringing call\n");

	if(sr_kemi_eng_get() == NULL) {
		ri = route_lookup(&main_rt, pp_resume_route.s);
		if(ri < 0 || main_rt.rlist[ri] == NULL) {
			LM_ERR("resume_route \"%.*s\" is not defined in the config\n",
					pp_resume_route.len, pp_resume_route.s);
			return -1;
		}
		resume_action = main_rt.rlist[ri];
	}

	memset(&reject_action, 0, sizeof(reject_action));
	reject_action.type = MODULE0_T;
	reject_action.count = 1;
	reject_action.val[0].type = MODEXP_ST;
	reject_action.val[0].u.data = &reject_export;
	return 0;
}

/* How a parked or forked call ended, for the engine: a CANCEL, its final reply (so a
 * device woken later gets the right CANCEL Reason), tm destroying it. */
static void pp_tm_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	uint64_t ref = (uint64_t)(uintptr_t)*ps->param;

	if(type == TMCB_E2ECANCEL_IN) {
		pp_tell(PP_OP_CANCEL, ref, 0);
		return;
	}
	if(type == TMCB_RESPONSE_OUT && t->uas.status < 200)
		return;
	pp_tell(type == TMCB_DESTROY ? PP_OP_ENDED : PP_OP_COMPLETED, ref, t->uas.status);
}

/* After the engine took the call. */
static void pp_tm_watch(sip_msg_t *msg, struct cell *t, uint64_t ref)
{
	if(tmb.register_tmcb(msg, t, TMCB_E2ECANCEL_IN | TMCB_RESPONSE_OUT | TMCB_DESTROY,
			   pp_tm_cb, (void *)(uintptr_t)ref, 0) <= 0)
		LM_WARN("no callbacks for call %llx: the engine learns its end at its timeout\n",
				(unsigned long long)ref);
	/* What happened before the callbacks were in place. */
	if(t->flags & T_CANCELED)
		pp_tell(PP_OP_CANCEL, ref, 0);
	else if(t->uas.status >= 200)
		pp_tell(PP_OP_COMPLETED, ref, t->uas.status);
}

/* The INVITE's transaction, created if the script did not: 1 with *t set, 0 for a
 * retransmission tm absorbed, -1 on error. */
static int pp_transaction(sip_msg_t *msg, struct cell **t)
{
	int ret;

	*t = tmb.t_gett();
	if(*t != NULL && *t != T_UNDEFINED)
		return 1;
	ret = tmb.t_newtran(msg);
	if(ret <= 0) {
		if(ret < 0)
			LM_ERR("cannot create the transaction (%d)\n", ret);
		return ret;
	}
	*t = tmb.t_gett();
	return 1;
}

int pp_tm_park(sip_msg_t *msg)
{
	struct cell *t;
	unsigned int h, l;
	ticks_t orig_fr, guard;
	pp_req_t r;
	int ret;

	if(pp_req_invite(&r, PP_OP_PARK, msg, GET_RURI(msg), "pushpark_park") < 0
			|| (ret = pp_transaction(msg, &t)) < 0)
		return pp_req_failed();
	if(ret == 0)
		return 0; /* retransmission, absorbed by tm */
	/* The blind branch's fr timer gets the park guard; restored on resume. */
	orig_fr = t->fr_timeout;
	guard = MS_TO_TICKS(pp_effective_park_timeout + PP_FR_GUARD_MS);
	if(t->fr_timeout < guard)
		t->fr_timeout = guard;
	if(tmb.t_suspend(msg, &h, &l) != 0) {
		LM_ERR("cannot suspend the transaction\n");
		t->fr_timeout = orig_fr;
		return pp_req_failed();
	}
	r.h.host_data = orig_fr;
	ret = pp_req_send(msg, &r, ((uint64_t)h << 32) | l);
	if(ret == PP_RET_PARKED) {
		pp_tm_watch(msg, t, r.h.host_ref);
	} else {
		tmb.t_cancel_suspend(h, l);
		t->fr_timeout = orig_fr;
	}
	return ret;
}

/* ---- pushpark_fork(): ring what can ring, push what sleeps ------------------------ */

/* A push-capable destination held back from the destination set (pushed, not rung). */
typedef struct pp_held {
	int ruri;   /* the Request-URI, else the dset branch in b */
	branch_t b; /* as lookup() made it, to ring it after all if nothing is pushed */
} pp_held_t;

/* 1 when Kamailio holds a live TCP/TLS connection to the contact (its usrloc connection
 * id, else its address): the app is awake. UDP has no connection: 0. */
static int pp_live_connection(str *uri, str *dst_uri, int otcpid)
{
	struct tcp_connection *c = NULL;
	struct sip_uri u;
	struct ip_addr *ip;
	str *target = dst_uri->len > 0 ? dst_uri : uri;
	int live = 0, port;

	if(tcp_disable)
		return 0;
	if(otcpid > 0)
		c = tcpconn_get(otcpid, 0, 0, 0, 0);
	if(c == NULL) {
		if(parse_uri(target->s, target->len, &u) < 0
				|| (u.proto != PROTO_TCP && u.proto != PROTO_TLS && u.proto != PROTO_WS
						&& u.proto != PROTO_WSS && u.type != SIPS_URI_T)
				|| (ip = str2ipx(&u.host)) == NULL)
			return 0;
		port = u.port_no ? u.port_no
						 : ((u.type == SIPS_URI_T || u.proto == PROTO_TLS) ? SIPS_PORT
																		   : SIP_PORT);
		c = tcpconn_get(0, ip, port, 0, 0);
	}
	if(c) {
		live = (c->state == S_CONN_OK);
		tcpconn_put(c);
	}
	return live;
}

/* push_registered: whether this push-capable contact is held back and pushed. */
static int pp_hold_back(str *uri, str *dst_uri, int otcpid)
{
	if(pp_push_registered == PP_PUSH_REG_ALWAYS)
		return 1;
	return !pp_live_connection(uri, dst_uri, otcpid);
}

/* Sorts the destination set: push-capable contacts go to the request (held-back ones
 * first, so they fit), held-back ones leave the set (kept in held). One that does not
 * fit in the request rings. Returns how many were held back. */
static int pp_fork_plan(sip_msg_t *msg, int ruri_dest, pp_req_t *r, pp_held_t *held)
{
	branch_t *b;
	str uri, dst, inst;
	int i, pass, hold, nheld = 0;
	unsigned char drop[MAX_BRANCHES_LIMIT] = {0};

	for(pass = 1; pass >= 0; pass--) { /* 1: held back, 0: ringing */
		if(ruri_dest && pp_contact_pushable(GET_RURI(msg)->s, GET_RURI(msg)->len)) {
			hold = pp_hold_back(GET_RURI(msg), &msg->dst_uri, msg->otcpid);
			if(hold == pass) {
				inst = msg->instance; /* raw: the engine takes quotes and <> */
				if(pp_req_add_fork_contact(r, GET_RURI(msg), &inst, !hold) < 0) {
					LM_WARN("too many push contacts: one (instance \"%.*s\") rings,"
							" unknown to the engine\n",
							inst.len, inst.s);
				} else if(hold) {
					held[nheld++].ruri = 1;
					ruri_mark_consumed();
				}
			}
		}
		for(i = 0; i < nr_branches; i++) {
			b = get_sip_branch(i);
			uri.s = b->uri;
			uri.len = b->len;
			if(!pp_contact_pushable(uri.s, uri.len))
				continue;
			dst.s = b->dst_uri;
			dst.len = b->dst_uri_len;
			hold = pp_hold_back(&uri, &dst, b->otcpid);
			if(hold != pass)
				continue;
			inst.s = b->instance;
			inst.len = b->instance_len;
			if(pp_req_add_fork_contact(r, &uri, &inst, !hold) < 0) {
				LM_WARN("too many push contacts: one (instance \"%.*s\") rings,"
						" unknown to the engine\n",
						inst.len, inst.s);
			} else if(hold) {
				held[nheld].ruri = 0;
				memcpy(&held[nheld++].b, b, sizeof(*b));
				drop[i] = 1;
			}
		}
	}
	for(i = nr_branches - 1; i >= 0; i--)
		if(drop[i])
			drop_sip_branch(i);
	return nheld;
}

/* Puts the held-back contacts back into the destination set. */
static void pp_fork_unhold(sip_msg_t *msg, pp_held_t *held, int nheld)
{
	branch_t *b, *nb;
	str uri, dst, path, inst, ruid, ua;
	int i;

	for(i = 0; i < nheld; i++) {
		if(held[i].ruri) {
			ruri_mark_new();
			continue;
		}
		b = &held[i].b;
		uri = (str){b->uri, b->len};
		dst = (str){b->dst_uri, b->dst_uri_len};
		path = (str){b->path, b->path_len};
		inst = (str){b->instance, b->instance_len};
		ruid = (str){b->ruid, b->ruid_len};
		ua = (str){b->location_ua, b->location_ua_len};
		nb = ksr_push_branch(msg, &uri, &dst, &path, b->q, b->flags, b->force_send_socket,
				&inst, b->reg_id, &ruid, &ua);
		if(nb)
			nb->otcpid = b->otcpid;
	}
}

/* t_relay() of what is in the destination set. With pushed devices still to come, a
 * failed send must not end the call: tm's own error reply is turned off. 1 relayed. */
static int pp_fork_relay(sip_msg_t *msg, struct cell *t)
{
	unsigned int had = t->flags & T_DISABLE_INTERNAL_REPLY;
	int ret;

	t->flags |= T_DISABLE_INTERNAL_REPLY;
	ret = tmb.t_relay(msg, NULL, NULL);
	if(!had)
		t->flags &= ~T_DISABLE_INTERNAL_REPLY;
	return ret > 0;
}

/* Ends the blind branch that keeps a forked call open: cancelled with a faked 487, as tm
 * does on a CANCEL, so that tm answers the caller with the best reply if the relayed
 * branches have all failed by then, and keeps waiting for them otherwise. */
static void pp_end_blind(struct cell *t)
{
	struct cancel_info ci;
	int b = t->async_backup.blind_uac;

	if(b < 0 || b >= t->nr_of_outgoings)
		return;
	memset(&ci, 0, sizeof(ci));
	tmb.prepare_to_cancel(t, &ci.cancel_bitmap, ~((branch_bm_t)1 << b));
	if(ci.cancel_bitmap)
		tmb.cancel_uacs(t, &ci, F_CANCEL_B_FAKE_REPLY);
}

int pp_tm_fork(sip_msg_t *msg, str *aor)
{
	struct cell *t;
	unsigned int h, l;
	ticks_t orig_fr;
	pp_held_t *held = NULL;
	pp_req_t r;
	int ret, ruri_dest, nheld, relayed = 0, result;

	/* lookup() put the first contact it found in the Request-URI (with its ruid); when
	 * it found nothing, the Request-URI is still the AOR and must not be relayed. */
	ruri_dest = ruri_get_forking_state() && msg->ruid.len > 0;
	if(aor == NULL)
		aor = ruri_dest ? &msg->first_line.u.request.uri : GET_RURI(msg);
	if(pp_req_invite(&r, PP_OP_FORK, msg, aor, "pushpark_fork") < 0
			|| (ret = pp_transaction(msg, &t)) < 0)
		return pp_req_failed();
	if(ret == 0)
		return 0; /* retransmission, absorbed by tm */
	if(!ruri_dest)
		ruri_mark_consumed();
	if(pp_push_registered == PP_PUSH_REG_NEVER && (ruri_dest || nr_branches > 0)) {
		/* Someone is registered: no push, as before pushpark_fork(). */
		return tmb.t_relay(msg, NULL, NULL) > 0 ? PP_RET_PARKED : PP_RET_ERROR;
	}
	held = pkg_malloc(sizeof(*held) * (nr_branches + 1));
	if(held == NULL) {
		PKG_MEM_ERROR;
		return pp_req_failed();
	}
	nheld = pp_fork_plan(msg, ruri_dest, &r, held);

	/* The blind branch of t_suspend() keeps the call open while devices wake, even if
	 * every ringing branch fails; its fr timer (only) gets the park guard. */
	orig_fr = t->fr_timeout;
	t->fr_timeout = MS_TO_TICKS(pp_effective_park_timeout + PP_FR_GUARD_MS);
	ret = tmb.t_suspend(msg, &h, &l);
	t->fr_timeout = orig_fr;
	if(ret != 0) {
		LM_ERR("cannot suspend the transaction (%d)\n", ret);
		pp_fork_unhold(msg, held, nheld);
		pkg_free(held);
		return tmb.t_relay(msg, NULL, NULL) > 0 ? PP_RET_PARKED : PP_RET_ERROR;
	}
	/* tm 5.6 relays no reply of a suspended transaction ("Reply for suspended
	 * transaction, done." in reply_received()): what t_suspend() is kept for is the blind
	 * branch and the request's lumps for the branches added later. */
	t->flags &= ~T_ASYNC_SUSPENDED;
	/* Relayed before the engine hears of the call: the engine's APPEND_BRANCH must not
	 * add branches while this worker still does. */
	if(ruri_get_forking_state() || nr_branches > 0)
		relayed = pp_fork_relay(msg, t);
	/* The script's t_on_branch() for the woken devices' branches: tm keeps it for
	 * t_append_branches() only once it relayed something. */
	if(t->on_branch)
		t->on_branch_delayed = t->on_branch;
	result = pp_req_send(msg, &r, ((uint64_t)h << 32) | l);
	if(result == PP_RET_PARKED) {
		pkg_free(held);
		pp_tm_watch(msg, t, r.h.host_ref);
		return result;
	}
	/* Nothing pushed: ring the held-back contacts too, as without pushpark. */
	if(nheld > 0) {
		pp_fork_unhold(msg, held, nheld);
		relayed |= pp_fork_relay(msg, t);
	}
	pkg_free(held);
	if(relayed) {
		/* t_cancel_suspend() would leave a call whose branches all failed meanwhile
		 * unanswered, and reset tm's record that the request was relayed. */
		pp_end_blind(t);
		return PP_RET_PARKED;
	}
	tmb.t_cancel_suspend(h, l);
	return result;
}

/* The resumed call's new branches should get tm's usual fr timer, not the park guard. */
static void pp_restore_fr(uint64_t ref, uint32_t fr_ticks)
{
	struct cell *t = NULL, *orig = tmb.t_gett();

	if(fr_ticks == 0)
		return; /* unknown: keep the guard */
	if(tmb.t_lookup_ident(&t, REF_HASH(ref), REF_LABEL(ref)) < 0 || t == NULL)
		return;
	t->fr_timeout = fr_ticks;
	tmb.unref_cell(t);
	tmb.t_sett(orig, T_BR_UNDEFINED);
}

int pp_host_resume(uint64_t ref, uint32_t fr_ticks, const pushpark_event *ev)
{
	static str evname = str_init("pushpark:resume");
	int ret;

	if(*pushpark_event_get_relay_path(ev))
		LM_WARN("call %llx: %s woke on another node: the resume route's lookup finds it only "
				"in a location table shared with that node (pushpark_fork() relays by "
				"itself)\n",
				(unsigned long long)ref, pushpark_event_get_aor(ev));
	pp_restore_fr(ref, fr_ticks);
	if(resume_action)
		ret = tmb.t_continue(REF_HASH(ref), REF_LABEL(ref), resume_action);
	else
		ret = tmb.t_continue_cb(REF_HASH(ref), REF_LABEL(ref), &pp_resume_route, &evname);
	if(ret != 0) {
		LM_DBG("call %llx not resumed (%d): cancelled or gone\n", (unsigned long long)ref,
				ret);
		return -1;
	}
	update_stat(pp_st_resumed, 1);
	return 0;
}

static int pp_reject_fn(sip_msg_t *msg, char *p1, char *p2)
{
	if(tmb.t_reply(msg, reject_code, reject_reason) < 0)
		LM_ERR("cannot reply %d to a parked call\n", reject_code);
	return 1;
}

int pp_host_reject(uint64_t ref, uint32_t fr_ticks, int code, const char *reason)
{
	int ret;

	pp_restore_fr(ref, fr_ticks);
	reject_code = code;
	reject_reason = (char *)reason;
	ret = tmb.t_continue(REF_HASH(ref), REF_LABEL(ref), &reject_action);
	if(ret != 0) {
		LM_DBG("call %llx not rejected (%d): cancelled or gone\n", (unsigned long long)ref,
				ret);
		return -1;
	}
	update_stat(pp_st_rejected, 1);
	return 0;
}

/* Looks the transaction up (current T for the duration) if it can still take
 * replies/branches. Release with pp_tm_release. */
static struct cell *pp_tm_acquire(uint64_t ref, struct cell **orig)
{
	struct cell *t = NULL;

	*orig = tmb.t_gett();
	if(tmb.t_lookup_ident(&t, REF_HASH(ref), REF_LABEL(ref)) < 0 || t == NULL) {
		tmb.t_sett(*orig, T_BR_UNDEFINED);
		return NULL;
	}
	if((t->flags & T_CANCELED) || t->uas.status >= 200) {
		tmb.unref_cell(t);
		tmb.t_sett(*orig, T_BR_UNDEFINED);
		return NULL;
	}
	return t;
}

static void pp_tm_release(struct cell *t, struct cell *orig)
{
	tmb.unref_cell(t);
	tmb.t_sett(orig, T_BR_UNDEFINED);
}

int pp_host_ended(uint64_t ref)
{
	struct cell *t = NULL, *orig = tmb.t_gett();
	int code = 0;

	if(tmb.t_lookup_ident(&t, REF_HASH(ref), REF_LABEL(ref)) < 0 || t == NULL) {
		tmb.t_sett(orig, T_BR_UNDEFINED);
		return 0;
	}
	if(t->flags & T_CANCELED)
		code = 487;
	else if(t->uas.status >= 200)
		code = t->uas.status;
	pp_tm_release(t, orig);
	return code;
}

/* 1 when the call has a branch other than the blind one of t_suspend(). Branches are
 * added by the worker that forked the call before the engine knows it, or by the engine
 * process itself. */
static int pp_rings(struct cell *t)
{
	int b;

	for(b = 0; b < t->nr_of_outgoings; b++)
		if(!(t->uac[b].flags & TM_UAC_FLAG_BLIND))
			return 1;
	return 0;
}

int pp_host_fork_reject(uint64_t ref, int code, const char *reason)
{
	struct cell *t, *orig;
	str totag = STR_NULL, r;
	int b;

	t = pp_tm_acquire(ref, &orig);
	if(t == NULL)
		return -1;
	for(b = 0; b < t->nr_of_outgoings; b++)
		if(!(t->uac[b].flags & TM_UAC_FLAG_BLIND) && t->uac[b].last_received < 200) {
			/* Still ringing somewhere: tm ends the call with the branches' answers. */
			pp_end_blind(t);
			pp_tm_release(t, orig);
			return 1;
		}
	r.s = (char *)reason;
	r.len = strlen(reason);
	/* As pp_host_provisional_reply(); a final reply also ends the blind branch. */
	tmb.t_get_reply_totag(t->uas.request, &totag);
	if(tmb.t_reply_with_body(t, code, &r, NULL, NULL, &totag) < 0)
		LM_ERR("cannot reply %d to call %llx\n", code, (unsigned long long)ref);
	else
		update_stat(pp_st_rejected, 1);
	tmb.t_sett(orig, T_BR_UNDEFINED);
	return 0;
}

/* 1 when the call already has this branch: tm's own test in t_append_branches() (same
 * ruid and URI), which otherwise fails loudly when nothing is new. */
static int pp_rings_already(struct cell *t, branch_t *b)
{
	int i;

	for(i = 0; i < t->nr_of_outgoings; i++)
		if(t->uac[i].ruid.len == b->ruid_len && t->uac[i].uri.len == b->len
				&& memcmp(t->uac[i].ruid.s, b->ruid, b->ruid_len) == 0
				&& memcmp(t->uac[i].uri.s, b->uri, b->len) == 0)
			return 1;
	return 0;
}

/* Keeps in the destination set the branches of this device (+sip.instance, as the engine
 * keys it; all when none matches: a device without an instance) that the call does not
 * ring yet. Returns how many are left. */
static int pp_device_branches(struct cell *t, const char *device)
{
	unsigned char keep[MAX_BRANCHES_LIMIT] = {0};
	branch_t *b;
	str inst;
	int i, n = 0, found = 0;

	for(i = 0; i < nr_branches && i < MAX_BRANCHES_LIMIT; i++) {
		b = get_sip_branch(i);
		inst.s = b->instance;
		inst.len = b->instance_len;
		if(pp_instance_is(&inst, device))
			keep[i] = found = 1;
	}
	for(i = nr_branches - 1; i >= 0; i--) {
		b = get_sip_branch(i);
		if((found && !keep[i]) || pp_rings_already(t, b))
			drop_sip_branch(i);
		else
			n++;
	}
	return n;
}

/* The branch to a device woken on another node: its Contact through that node's Path. */
static int pp_relay_branch(sip_msg_t *msg, const pushpark_event *ev)
{
	str uri, path, dst;

	uri.s = (char *)pushpark_event_get_relay_uri(ev);
	uri.len = strlen(uri.s);
	path.s = (char *)pushpark_event_get_relay_path(ev);
	path.len = strlen(path.s);
	if(get_path_dst_uri(&path, &dst) < 0) {
		LM_ERR("bad Path from another node for %s\n", pushpark_event_get_aor(ev));
		return -1;
	}
	return append_branch(msg, &uri, &dst, &path, Q_UNSPECIFIED, 0, NULL, NULL, 0, NULL, NULL)
						   == 1
				   ? 0
				   : -1;
}

/* Fills the destination set with the event's device: through the Path of the node that
 * woke it, else its contacts in the location table. 1 filled, 0 nothing to add, -1 error. */
static int pp_append_dset(struct cell *t, uint64_t ref, const pushpark_event *ev)
{
	const char *aor = pushpark_event_get_aor(ev), *device = pushpark_event_get_device(ev);
	str uri;

	if(*pushpark_event_get_relay_path(ev))
		return pp_relay_branch(t->uas.request, ev) == 0 ? 1 : -1;
	uri.s = (char *)aor;
	uri.len = strlen(aor);
	if(regb.lookup_to_dset(t->uas.request, &pp_location_table, &uri) != 1) {
		LM_INFO("call %llx: no contact to add for %s\n", (unsigned long long)ref, aor);
		return 0;
	}
	if(pp_device_branches(t, device) == 0) {
		LM_DBG("call %llx: %s rings already\n", (unsigned long long)ref, device);
		return 0;
	}
	return 1;
}

int pp_host_append(uint64_t ref, const pushpark_event *ev)
{
	const char *aor = pushpark_event_get_aor(ev);
	struct cell *t, *orig;
	str contact = STR_NULL;
	int n;

	if(!*pushpark_event_get_relay_path(ev) && !have_registrar) {
		LM_WARN("second device for call %llx ignored: registrar not loaded\n",
				(unsigned long long)ref);
		return 0;
	}
	t = pp_tm_acquire(ref, &orig);
	if(t == NULL)
		return -1;
	clear_branches();
	n = pp_append_dset(t, ref, ev);
	if(n > 0)
		n = tmb.t_append_branches(&contact);
	clear_branches();
	pp_tm_release(t, orig);
	if(n < 0)
		LM_WARN("call %llx: cannot add a branch for %s (%d)\n", (unsigned long long)ref, aor,
				n);
	else if(n > 0)
		update_stat(pp_st_branches, 1);
	return 0;
}

int pp_host_provisional_reply(uint64_t ref)
{
	int code = pp_provisional_code;
	struct cell *t, *orig;
	str totag = STR_NULL;

	t = pp_tm_acquire(ref, &orig);
	if(t == NULL)
		return -1;
	/* Only for a call that rings nowhere: a forked call's relayed branches have their
	 * own provisionals, and one of them may be relayed while this 110/180 is sent
	 * (the 1xx would reach the caller after the 180 it replaces). */
	if(t->uas.status >= code || pp_rings(t)) {
		pp_tm_release(t, orig);
		return 0;
	}
	/* The To tag tm itself gives its local replies (RFC 3261: 1xx but 100 carry one).
	 * t_reply_with_body() drops the reference t_lookup_ident() took. */
	tmb.t_get_reply_totag(t->uas.request, &totag);
	if(tmb.t_reply_with_body(t, code, &pp_provisional_reason, NULL, NULL, &totag) < 0)
		LM_WARN("call %llx: cannot send %d\n", (unsigned long long)ref, code);
	tmb.t_sett(orig, T_BR_UNDEFINED);
	return 0;
}

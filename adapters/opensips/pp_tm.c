/*
 * tm glue: parking or forking an INVITE in a SIP worker (pushpark_park, pushpark_fork),
 * and from the engine process adding the woken devices' branches, replying and ringing.
 *
 * OpenSIPS's own RFC 8599 support (lib/reg/pn.c) keeps a call open for a waking device
 * with a phony branch (t_wait_for_new_branches) and adds the device's branch with
 * t_inject_branches once it registers. The same here: the worker adds the phony branch
 * and hands the call to the engine; the engine process reads the woken contacts from
 * usrloc and injects them into the transaction. No script route runs: the injected
 * branches get the transaction's t_on_branch/t_on_failure/t_on_reply as set before
 * pushpark_park() or pushpark_fork().
 */
#include <string.h>
#include <time.h>

#include "context.h"
#include "dprint.h"
#include "dset.h"
#include "error.h"
#include "action.h"
#include "cmds.h"
#include "mem/mem.h"
#include "modules/tm/tm_load.h"
#include "parser/parse_rr.h"
#include "pushpark.h"
#include "pp_config.h"
#include "pp_dset.h"
#include "pp_ipc.h"
#include "pp_sip.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

/* The phony branch's fr timer runs this far past the park timeout, so the engine's own
 * reply always comes first; it only fires when the engine process is stuck. */
#define PP_FR_GUARD_S 5

static struct tm_binds tmb;
static cmd_function inject_fn;

#define REF_HASH(r) ((unsigned int)((r) >> 32))
#define REF_LABEL(r) ((unsigned int)((r)&0xffffffffu))

int pp_tm_init(void)
{
	const cmd_export_t *inject;

	if(load_tm_api(&tmb) < 0) {
		LM_ERR("the tm module is required\n");
		return -1;
	}
	/* tm's API has no injection from a destination set; its script function does it. */
	inject = find_cmd_export_t("t_inject_branches", 0);
	if(inject == NULL) {
		LM_ERR("tm has no t_inject_branches()\n");
		return -1;
	}
	inject_fn = inject->function;
	return pp_dset_init();
}

static int pp_rings(struct cell *t);

/* A CANCEL of a call that rings nowhere: tm 3.6 cancels a lone phony branch with a
 * faked 487 that its own branch picking then skips ("pick_branch failed"), and the
 * caller would wait for ever. The 487 is sent here, before tm's attempt. */
static void pp_cancelled(struct cell *t)
{
	str text = str_init("Request Terminated");

	if(t->uas.status < 200 && !pp_rings(t)
			&& tmb.t_reply_with_body(t, 487, &text, NULL, NULL, NULL) < 0)
		LM_ERR("cannot reply 487 to a cancelled parked call\n");
}

/* How a parked call ended, for the engine: a CANCEL, its final reply (so a device woken
 * later gets the right CANCEL Reason), tm deleting it. */
static void pp_tm_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	uint64_t ref = (uint64_t)(uintptr_t)*ps->param;

	if(type == TMCB_TRANS_CANCELLED) {
		/* The engine hears of the CANCEL before the 487 (TMCB_RESPONSE_OUT). */
		pp_tell(PP_OP_CANCEL, ref, 0);
		pp_cancelled(t);
	} else if(type == TMCB_TRANS_DELETED)
		pp_tell(PP_OP_ENDED, ref, t->uas.status);
	else if(ps->code >= 200)
		pp_tell(PP_OP_COMPLETED, ref, ps->code);
}

/* After the engine took the call. */
static void pp_tm_watch(struct sip_msg *msg, struct cell *t, uint64_t ref)
{
	if(tmb.register_tmcb(msg, t, TMCB_TRANS_CANCELLED | TMCB_RESPONSE_OUT | TMCB_TRANS_DELETED,
			   pp_tm_cb, (void *)(uintptr_t)ref, NULL) <= 0)
		LM_WARN("no callbacks for call %llx: the engine learns its end at its timeout\n",
				(unsigned long long)ref);
	/* What happened before the callbacks were in place. */
	if(was_cancelled(t))
		pp_tell(PP_OP_CANCEL, ref, 0);
	else if(t->uas.status >= 200)
		pp_tell(PP_OP_COMPLETED, ref, t->uas.status);
}

/* The call's phony branch (t_wait_for_new_branches), or -1. */
static int pp_phony(struct cell *t)
{
	int b;

	for(b = t->nr_of_outgoings - 1; b >= 0; b--)
		if(t->uac[b].flags & T_UAC_IS_PHONY)
			return b;
	return -1;
}

/* In the worker, while only it knows t: the phony branch stops holding the call open
 * (what tm's t_wait_no_more_branches() does), so the script's reply or relay decides. */
static void pp_stop_waiting(struct cell *t)
{
	int b = pp_phony(t);

	if(b >= 0)
		t->uac[b].br_flags = t->nr_of_outgoings;
}

/* The INVITE's transaction, created if the script did not (tm answers E_SCRIPT when it
 * did): 1 with *t set, 0 for a retransmission tm absorbed, -1 on error. */
static int pp_transaction(struct sip_msg *msg, struct cell **t)
{
	int ret = tmb.t_newtran(msg);

	if(ret == 0)
		return 0;
	if(ret < 0 && ret != E_SCRIPT) {
		LM_ERR("cannot create the transaction (%d)\n", ret);
		return -1;
	}
	*t = tmb.t_gett();
	return 1;
}

/* Adds the phony branch that keeps the call open while devices wake, even without (or
 * after) any other branch. Its fr timer is the transaction's fr_inv timeout at the time
 * it is added: the park timeout and a guard. 0, or -1 logged. */
static int pp_wait(struct sip_msg *msg, struct cell *t)
{
	int fr_inv = t->fr_inv_timeout, ret;

	if(pp_phony(t) >= 0) {
		LM_ERR("the call already waits for new branches\n");
		return -1;
	}
	t->fr_inv_timeout = (pp_effective_park_timeout + 999) / 1000 + PP_FR_GUARD_S;
	ret = tmb.t_wait_for_new_branches(msg, 0);
	t->fr_inv_timeout = fr_inv;
	if(ret < 0) {
		LM_ERR("cannot keep the transaction open\n");
		return -1;
	}
	return 0;
}

static uint64_t pp_ref(struct cell *t)
{
	return ((uint64_t)t->hash_index << 32) | t->label;
}

int pp_tm_park(struct sip_msg *msg)
{
	struct cell *t;
	pp_req_t r;
	int ret;

	/* The phony branch is there before the engine hears of the call: the engine process
	 * may inject a branch at once. */
	if(pp_req_invite(&r, PP_OP_PARK, msg, GET_RURI(msg), "pushpark_park") < 0
			|| (ret = pp_transaction(msg, &t)) < 0 || (ret > 0 && pp_wait(msg, t) < 0))
		return pp_req_failed();
	if(ret == 0)
		return 0; /* retransmission, absorbed by tm */
	ret = pp_req_send(msg, &r, pp_ref(t));
	if(ret == PP_RET_PARKED)
		pp_tm_watch(msg, t, pp_ref(t));
	else
		pp_stop_waiting(t);
	return ret;
}

/* ---- pushpark_fork(): ring what can ring, push what sleeps ------------------------ */

/* A destination held back from the destination set (pushed, not rung), copied: the set
 * reuses its storage. */
typedef struct pp_held {
	struct msg_branch b;
	char *buf;
} pp_held_t;

static int pp_hold(pp_held_t *h, struct msg_branch *b)
{
	char *p;

	h->b = *b;
	h->b.attrs = NULL;
	h->buf = p = pkg_malloc(b->uri.len + b->dst_uri.len + b->path.len + 1);
	if(p == NULL) {
		LM_ERR("out of pkg memory\n");
		return -1;
	}
	memcpy(p, b->uri.s, b->uri.len);
	h->b.uri.s = p;
	p += b->uri.len;
	if(b->dst_uri.len)
		memcpy(p, b->dst_uri.s, b->dst_uri.len);
	h->b.dst_uri.s = p;
	p += b->dst_uri.len;
	if(b->path.len)
		memcpy(p, b->path.s, b->path.len);
	h->b.path.s = p;
	return 0;
}

/* Frees the copies of n held-back destinations. */
static void pp_held_release(pp_held_t *held, int n)
{
	while(n-- > 0)
		pkg_free(held[n].buf);
}

static void pp_held_free(pp_held_t *held, int n)
{
	pp_held_release(held, n);
	pkg_free(held);
}

/* The destination set's i-th destination: -1 the Request-URI, else branch i. */
static void pp_dest(struct sip_msg *msg, int i, struct msg_branch *b)
{
	if(i >= 0) {
		*b = *get_msg_branch(i);
		return;
	}
	memset(b, 0, sizeof(*b));
	b->uri = *GET_RURI(msg);
	b->dst_uri = msg->dst_uri;
	b->path = msg->path_vec;
	b->q = get_ruri_q(msg);
	b->bflags = getb0flags(msg);
	b->force_send_socket = msg->force_send_socket;
}

/* Sorts the destination set lookup() made (*ruri_dest: the Request-URI is one of them;
 * cleared when it is held back): push-capable contacts go to the FORK request (held-back
 * ones first, so they fit), held-back ones leave the set (copied to held). A contact that
 * does not fit in the request rings. Returns how many were held back, -1 on error. */
static int pp_fork_plan(struct sip_msg *msg, struct urecord *rec, int *ruri_dest,
		pp_req_t *r, pp_held_t *held)
{
	struct msg_branch b;
	unsigned char drop[MAX_BRANCHES] = {0};
	/* Per destination (index i + 1): -1 rings as it is, 1 held back, 0 pushable and
	 * ringing; the live-connection lookup done once. */
	signed char hold[MAX_BRANCHES + 1];
	int i, n, pass, nheld = 0, ruri_held = 0;
	str inst;

	for(n = 0; get_msg_branch(n) != NULL && n < MAX_BRANCHES; n++)
		;
	for(i = *ruri_dest ? -1 : 0; i < n; i++) {
		pp_dest(msg, i, &b);
		hold[i + 1] = !pp_contact_pushable(b.uri.s, b.uri.len)
							  ? -1
							  : pp_push_registered == PP_PUSH_REG_ALWAYS
										|| !pp_live_connection(&b);
	}
	for(pass = 1; pass >= 0; pass--) { /* 1: held back, 0: ringing */
		for(i = *ruri_dest ? -1 : 0; i < n; i++) {
			if(hold[i + 1] != pass)
				continue;
			pp_dest(msg, i, &b);
			pp_contact_instance(rec, &b.uri, &inst);
			if(pp_req_add_fork_contact(r, &b.uri, &inst, !pass) < 0) {
				LM_WARN("too many push contacts: %.*s rings, unknown to the engine\n",
						b.uri.len, b.uri.s);
				continue;
			}
			if(!pass)
				continue;
			if(pp_hold(&held[nheld], &b) < 0) {
				pp_held_release(held, nheld);
				return -1;
			}
			nheld++;
			if(i < 0)
				ruri_held = 1;
			else
				drop[i] = 1;
		}
	}
	for(i = n - 1; i >= 0; i--)
		if(drop[i])
			remove_msg_branch(i);
	/* A held-back Request-URI gives way to the first branch left, if any. */
	if(ruri_held) {
		*ruri_dest = get_msg_branch(0) != NULL;
		if(*ruri_dest && move_msg_branch_to_ruri(0, msg) == 0)
			remove_msg_branch(0);
	}
	return nheld;
}

/* Puts the held-back destinations back into the destination set and rings them: relayed
 * if nothing was yet, else injected into the call. 1 when something rings. */
static int pp_fork_unhold(struct sip_msg *msg, pp_held_t *held, int nheld, int relayed)
{
	int i;

	for(i = 0; i < nheld; i++)
		if(pp_dset_put(msg, &held[i].b, i == 0) < 0)
			LM_ERR("cannot ring %.*s\n", held[i].b.uri.len, held[i].b.uri.s);
	if(!relayed)
		return tmb.t_relay(msg, (void *)TM_T_RELAY_noerr_FLAG, NULL) > 0;
	return inject_fn(msg, (void *)(long)TM_INJECT_SRC_MSG, (void *)0, 0, 0, 0, 0, 0, 0) > 0;
}

int pp_tm_fork(struct sip_msg *msg, str *aor)
{
	char aor_buf[PP_AOR_MAX];
	struct urecord *rec;
	struct cell *t;
	pp_held_t *held;
	pp_req_t r;
	str key, a, inst;
	int ret, ruri_dest, nheld, relayed = 0, result;

	/* lookup() rewrote the Request-URI: the AOR is the one received. */
	if(aor == NULL)
		aor = &msg->first_line.u.request.uri;
	if(pp_req_invite(&r, PP_OP_FORK, msg, aor, "pushpark_fork") < 0
			|| pp_aor(aor, aor_buf, &a) < 0 || pp_ul_aor(aor_buf, &key) < 0
			|| (ret = pp_transaction(msg, &t)) < 0)
		return pp_req_failed();
	if(ret == 0)
		return 0; /* retransmission, absorbed by tm */
	held = pkg_malloc(sizeof(*held) * (MAX_BRANCHES + 1));
	if(held == NULL) {
		LM_ERR("out of pkg memory\n");
		return pp_req_failed();
	}
	rec = pp_ul_get(&key);
	/* The Request-URI is a destination when lookup() put a contact there. */
	ruri_dest = pp_contact_instance(rec, GET_RURI(msg), &inst);
	if(pp_push_registered == PP_PUSH_REG_NEVER && (ruri_dest || get_msg_branch(0))) {
		/* Someone is registered: no push, as before pushpark_fork(). */
		if(rec)
			pp_ul_release(rec, &key);
		pkg_free(held);
		return tmb.t_relay(msg, NULL, NULL) > 0 ? PP_RET_PARKED : PP_RET_ERROR;
	}
	nheld = pp_fork_plan(msg, rec, &ruri_dest, &r, held);
	if(rec)
		pp_ul_release(rec, &key);
	if(nheld < 0 || pp_wait(msg, t) < 0) {
		pp_held_free(held, nheld < 0 ? 0 : nheld);
		return pp_req_failed();
	}
	/* Relayed before the engine hears of the call: the engine process must not inject
	 * branches while this worker still adds them. A failed send must not end the call
	 * while pushed devices may still come (noerr). */
	if(ruri_dest)
		relayed = tmb.t_relay(msg, (void *)TM_T_RELAY_noerr_FLAG, NULL) > 0;
	result = pp_req_send(msg, &r, pp_ref(t));
	if(result == PP_RET_PARKED) {
		pp_held_free(held, nheld);
		pp_tm_watch(msg, t, pp_ref(t));
		return result;
	}
	/* Nothing pushed: ring the held-back contacts too, as without pushpark. */
	if(nheld > 0)
		relayed |= pp_fork_unhold(msg, held, nheld, relayed);
	pp_held_free(held, nheld);
	if(relayed) {
		/* tm ends the phony branch (a faked 408) and the call with the branches'
		 * answers. */
		tmb.t_wait_no_more_branches();
		return PP_RET_PARKED;
	}
	pp_stop_waiting(t);
	return result;
}

/* ---- engine process ------------------------------------------------------------- */

/* Looks the transaction up if it can still take replies and branches (referenced:
 * release with tmb.unref_cell). */
static struct cell *pp_tm_acquire(uint64_t ref)
{
	struct cell *t = NULL;

	if(tmb.t_lookup_ident(&t, REF_HASH(ref), REF_LABEL(ref)) < 0 || t == NULL)
		return NULL;
	if(was_cancelled(t) || t->uas.status >= 200) {
		tmb.unref_cell(t);
		return NULL;
	}
	return t;
}

int pp_host_ended(uint64_t ref)
{
	struct cell *t = NULL;
	int code = 0;

	if(tmb.t_lookup_ident(&t, REF_HASH(ref), REF_LABEL(ref)) < 0 || t == NULL)
		return 0;
	if(was_cancelled(t))
		code = 487;
	else if(t->uas.status >= 200)
		code = t->uas.status;
	tmb.unref_cell(t);
	return code;
}

/* 1 when a branch other than the phony one still rings. */
static int pp_rings(struct cell *t)
{
	int b;

	for(b = t->first_branch; b < t->nr_of_outgoings; b++)
		if(!(t->uac[b].flags & T_UAC_IS_PHONY) && t->uac[b].last_received < 200)
			return 1;
	return 0;
}

/* 1 when the call has a branch to this contact already. */
static int pp_has_branch(struct cell *t, str *uri)
{
	int b;

	for(b = 0; b < t->nr_of_outgoings; b++)
		if(t->uac[b].uri.len == uri->len && memcmp(t->uac[b].uri.s, uri->s, uri->len) == 0)
			return 1;
	return 0;
}

/* Fills msg's destination set with the AOR's live contacts that the call does not ring
 * yet, only the device's (its +sip.instance as the engine keys it) when device is set
 * and one of them is that device. Returns how many. */
static int pp_woken_contacts(struct cell *t, struct sip_msg *msg, str *key, const char *device)
{
	struct urecord *rec = pp_ul_get(key);
	struct msg_branch b;
	ucontact_t *c;
	time_t now = time(NULL);
	int n = 0, only_device;

	if(rec == NULL)
		return 0;
	only_device = device && pp_device_contact(rec, device) != NULL;
	for(c = rec->contacts; c; c = c->next) {
		if(!VALID_CONTACT(c, now) || pp_has_branch(t, &c->c))
			continue;
		if(only_device && !pp_instance_is(&c->instance, device))
			continue;
		if(pp_contact_branch(c, &b) == 0 && pp_dset_put(msg, &b, n == 0) == 0)
			n++;
	}
	pp_ul_release(rec, key);
	return n;
}

/* Fills msg's destination set with the device woken on another node of a cluster: its
 * Contact through that node's Path. Returns how many (0 or 1). */
static int pp_relay_contact(struct sip_msg *msg, const pushpark_event *ev)
{
	struct msg_branch b;

	memset(&b, 0, sizeof(b));
	b.uri.s = (char *)pushpark_event_get_relay_uri(ev);
	b.uri.len = strlen(b.uri.s);
	b.path.s = (char *)pushpark_event_get_relay_path(ev);
	b.path.len = strlen(b.path.s);
	b.q = Q_UNSPECIFIED;
	if(get_path_dst_uri(&b.path, &b.dst_uri) < 0) {
		LM_ERR("bad Path from another node for %s\n", pushpark_event_get_aor(ev));
		return 0;
	}
	return pp_dset_put(msg, &b, 1) == 0;
}

/* Injects the woken contacts (see pp_woken_contacts; only the event's device's when
 * device_only) or the relayed device (pp_relay_contact) into the call. last: the phony
 * branch stops holding the call open once they are in (a resumed call ends with their
 * answers). -1 when the call is gone, 0 when injected, 1 when nobody was there. */
static int pp_inject(uint64_t ref, const pushpark_event *ev, int device_only, int last)
{
	const char *aor = pushpark_event_get_aor(ev);
	struct tm_id id = {REF_HASH(ref), REF_LABEL(ref)};
	struct sip_msg *msg;
	struct cell *t;
	context_p ctx;
	str key;
	int n, ret = -1;

	if(pp_ul_aor(aor, &key) < 0) {
		LM_ERR("call %llx: bad AOR %s\n", (unsigned long long)ref, aor);
		return 1;
	}
	t = pp_tm_acquire(ref);
	if(t == NULL)
		return -1;
	/* Destination sets live in a processing context, as for a received message. */
	ctx = context_alloc(CONTEXT_GLOBAL);
	msg = ctx ? get_dummy_sip_msg() : NULL;
	if(msg == NULL) {
		LM_ERR("out of memory\n");
		if(ctx)
			context_free(ctx);
		tmb.unref_cell(t);
		return 1;
	}
	memset(ctx, 0, context_size(CONTEXT_GLOBAL));
	set_global_context(ctx);
	if(*pushpark_event_get_relay_path(ev))
		n = pp_relay_contact(msg, ev);
	else
		n = pp_woken_contacts(
				t, msg, &key, device_only ? pushpark_event_get_device(ev) : NULL);
	tmb.unref_cell(t);
	if(n == 0) {
		ret = 1;
	} else {
		tmb.t_set_remote_t(&id);
		ret = inject_fn(msg, (void *)(long)TM_INJECT_SRC_MSG,
				(void *)(long)(last ? TM_INJECT_FLAG_LAST : 0), 0, 0, 0, 0, 0, 0);
		tmb.t_set_remote_t(NULL);
		if(ret > 0) {
			ret = 0;
		} else {
			LM_WARN("call %llx: no branch added for %s (%d)\n", (unsigned long long)ref,
					aor, ret);
			ret = -1;
		}
	}
	clear_dset();
	release_dummy_sip_msg(msg);
	context_destroy(CONTEXT_GLOBAL, ctx);
	context_free(ctx);
	set_global_context(NULL);
	return ret;
}

int pp_host_resume(uint64_t ref, uint32_t host_data, const pushpark_event *ev)
{
	const char *aor = pushpark_event_get_aor(ev);
	int ret = pp_inject(ref, ev, 0, 1);

	if(ret == 1) {
		/* Woken, but no live binding to ring (an unREGISTER right after): as if
		 * nobody had woken. */
		LM_INFO("call %llx: %s woke without a binding to ring\n", (unsigned long long)ref,
				aor);
		return pp_host_fork_reject(ref, pp_reply_code ? pp_reply_code : 480,
				pp_reply_reason && *pp_reply_reason ? pp_reply_reason
													: "Temporarily Unavailable");
	}
	if(ret == 0)
		update_stat(pp_st_resumed, 1);
	return ret;
}

int pp_host_append(uint64_t ref, const pushpark_event *ev)
{
	const char *aor = pushpark_event_get_aor(ev);
	int ret = pp_inject(ref, ev, 1, 0);

	if(ret == 1) {
		LM_INFO("call %llx: no contact to add for %s\n", (unsigned long long)ref, aor);
		return 0;
	}
	if(ret == 0)
		update_stat(pp_st_branches, 1);
	return ret;
}

int pp_host_fork_reject(uint64_t ref, int code, const char *reason)
{
	struct tm_id id = {REF_HASH(ref), REF_LABEL(ref)};
	struct cell *t = pp_tm_acquire(ref);
	str text;
	int ret = 0;

	if(t == NULL)
		return -1;
	if(pp_rings(t)) {
		/* Branches the script relayed too: tm ends the phony branch (a faked 408,
		 * under the replies lock) and the call with their answers. */
		tmb.t_set_remote_t(&id);
		if(tmb.t_wait_no_more_branches() < 0)
			LM_WARN("call %llx: cannot end its waiting\n", (unsigned long long)ref);
		tmb.t_set_remote_t(NULL);
		ret = 1;
	} else {
		text.s = (char *)reason;
		text.len = strlen(reason);
		if(tmb.t_reply_with_body(t, code, &text, NULL, NULL, NULL) < 0)
			LM_ERR("cannot reply %d to call %llx\n", code, (unsigned long long)ref);
		else
			update_stat(pp_st_rejected, 1);
	}
	tmb.unref_cell(t);
	return ret;
}

int pp_host_reject(uint64_t ref, uint32_t host_data, int code, const char *reason)
{
	return pp_host_fork_reject(ref, code, reason);
}

int pp_host_provisional_reply(uint64_t ref)
{
	struct cell *t = pp_tm_acquire(ref);
	str text;

	if(t == NULL)
		return -1;
	/* Only for a call that rings nowhere: a resumed call's branches have their own. */
	if(t->uas.status < (unsigned int)pp_provisional_code && !pp_rings(t)) {
		text.s = pp_provisional_reason;
		text.len = strlen(pp_provisional_reason);
		if(tmb.t_reply_with_body(t, pp_provisional_code, &text, NULL, NULL, NULL) < 0)
			LM_WARN("call %llx: cannot send %d\n", (unsigned long long)ref,
					pp_provisional_code);
	}
	tmb.unref_cell(t);
	return 0;
}

/*
 * tm glue: suspending an INVITE in a SIP worker (pushpark_park), and resuming,
 * rejecting, ringing and extending it from the engine process.
 */
#include <string.h>

#include "core/dprint.h"
#include "core/dset.h"
#include "core/kemi.h"
#include "core/parser/parse_from.h"
#include "core/parser/parse_uri.h"
#include "core/route.h"
#include "core/route_struct.h"
#include "core/sr_module.h"
#include "core/timer_ticks.h"
#include "modules/registrar/api.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"
#include "pushpark.h"
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

static int pp_park_args(sip_msg_t *msg, pp_req_t *r)
{
	char aor_buf[PP_AOR_MAX];
	str aor, ruri, empty = STR_NULL;
	struct to_body *from;

	if(parse_headers(msg, HDR_CALLID_F | HDR_FROM_F, 0) < 0 || msg->callid == NULL
			|| msg->from == NULL || parse_from_header(msg) < 0) {
		LM_ERR("INVITE without Call-ID or From\n");
		return -1;
	}
	from = get_from(msg);
	ruri = msg->new_uri.s ? msg->new_uri : msg->first_line.u.request.uri;
	if(pp_aor(&ruri, aor_buf, &aor) < 0)
		return -1;
	if(pp_req_add(r, &msg->callid->body) < 0 || pp_req_add(r, &aor) < 0
			|| pp_req_add(r, &from->uri) < 0
			|| pp_req_add(r, from->display.len > 0 ? &from->display : &empty) < 0) {
		LM_ERR("INVITE too large to park\n");
		return -1;
	}
	return 0;
}

/* Tells the engine what became of a parked call: PP_OP_CANCEL or PP_OP_ENDED. */
static void pp_tell(int op, uint64_t ref)
{
	pp_req_t r;

	pp_req_init(&r, op);
	r.h.host_ref = ref;
	/* A full queue is logged by pp_send(); at shutdown the engine is gone already. */
	if(pp_send(&r) < 0)
		LM_DBG("engine not told that call %llx %s\n", (unsigned long long)ref,
				op == PP_OP_CANCEL ? "was cancelled" : "ended");
}

static void pp_tm_cb(struct cell *t, int type, struct tmcb_params *ps)
{
	pp_tell(type == TMCB_E2ECANCEL_IN ? PP_OP_CANCEL : PP_OP_ENDED,
			(uint64_t)(uintptr_t)*ps->param);
}

int pp_tm_park(sip_msg_t *msg)
{
	struct cell *t;
	unsigned int h, l;
	ticks_t orig_fr, guard;
	uint64_t ref;
	pp_req_t r;
	pp_rpl_t rpl;
	int ret;

	if(msg->first_line.type != SIP_REQUEST || msg->REQ_METHOD != METHOD_INVITE) {
		LM_ERR("pushpark_park() parks INVITEs only\n");
		goto error;
	}
	pp_req_init(&r, PP_OP_PARK);
	if(pp_park_args(msg, &r) < 0)
		goto error;

	t = tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED) {
		ret = tmb.t_newtran(msg);
		if(ret == 0)
			return 0; /* retransmission, absorbed by tm */
		if(ret < 0) {
			LM_ERR("cannot create the transaction (%d)\n", ret);
			goto error;
		}
		t = tmb.t_gett();
	}
	orig_fr = t->fr_timeout;
	guard = MS_TO_TICKS(pp_effective_park_timeout + PP_FR_GUARD_MS);
	if(t->fr_timeout < guard)
		t->fr_timeout = guard;
	if(tmb.t_suspend(msg, &h, &l) != 0) {
		LM_ERR("cannot suspend the transaction\n");
		t->fr_timeout = orig_fr;
		goto error;
	}
	ref = ((uint64_t)h << 32) | l;
	r.h.host_ref = ref;
	r.h.timeout_ms = (uint32_t)pp_park_timeout;
	r.h.fr_ticks = orig_fr;

	/* No answer in time: the engine does not keep the call either (see pp_ipc.h). */
	if(pp_call(&r, pp_ipc_timeout, &rpl) < 0)
		goto unsuspend;
	if(rpl.result != PUSHPARK_OK) {
		if(rpl.result == PUSHPARK_ERR_NO_DEVICE) {
			tmb.t_cancel_suspend(h, l);
			t->fr_timeout = orig_fr;
			update_stat(pp_st_no_device, 1);
			return PP_RET_NO_DEVICE;
		}
		LM_WARN("call %.*s not parked: %s\n", msg->callid->body.len, msg->callid->body.s,
				pushpark_result_name(rpl.result));
		goto unsuspend;
	}
	if(tmb.register_tmcb(msg, t, TMCB_E2ECANCEL_IN | TMCB_DESTROY, pp_tm_cb,
			   (void *)(uintptr_t)ref, 0) <= 0)
		LM_WARN("no CANCEL callback for call %llx: a CANCEL ends it only at its timeout\n",
				(unsigned long long)ref);
	if(t->flags & T_CANCELED)
		pp_tell(PP_OP_CANCEL, ref); /* CANCELled before the callback was in place */
	update_stat(pp_st_parked, 1);
	LM_DBG("call %.*s parked (%llx, park id %llu)\n", msg->callid->body.len,
			msg->callid->body.s, (unsigned long long)ref, (unsigned long long)rpl.park_id);
	return PP_RET_PARKED;

unsuspend:
	tmb.t_cancel_suspend(h, l);
	t->fr_timeout = orig_fr;
error:
	update_stat(pp_st_park_errors, 1);
	return PP_RET_ERROR;
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

int pp_tm_resume(uint64_t ref, uint32_t fr_ticks)
{
	static str evname = str_init("pushpark:resume");
	int ret;

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

int pp_tm_reject(uint64_t ref, uint32_t fr_ticks, int code, const char *reason)
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

int pp_tm_append(uint64_t ref, const char *aor)
{
	struct cell *t, *orig;
	str uri, contact = STR_NULL;
	int n;

	if(!have_registrar) {
		LM_WARN("second device for call %llx ignored: registrar not loaded\n",
				(unsigned long long)ref);
		return 0;
	}
	t = pp_tm_acquire(ref, &orig);
	if(t == NULL)
		return -1;
	uri.s = (char *)aor;
	uri.len = strlen(aor);
	clear_branches();
	if(regb.lookup_to_dset(t->uas.request, &pp_location_table, &uri) != 1) {
		LM_INFO("call %llx: no contact to add for %s\n", (unsigned long long)ref, aor);
		pp_tm_release(t, orig);
		return 0;
	}
	n = tmb.t_append_branches(&contact);
	clear_branches();
	pp_tm_release(t, orig);
	if(n < 0) {
		LM_WARN("call %llx: cannot add a branch for %s (%d)\n", (unsigned long long)ref, aor,
				n);
		return 0;
	}
	update_stat(pp_st_branches, 1);
	return 0;
}

int pp_tm_provisional(uint64_t ref, int code, str *reason)
{
	struct cell *t, *orig;
	str totag = STR_NULL;

	t = pp_tm_acquire(ref, &orig);
	if(t == NULL)
		return -1;
	if(t->uas.status >= code) {
		pp_tm_release(t, orig);
		return 0;
	}
	/* The To tag tm itself gives its local replies (RFC 3261: 1xx but 100 carry one).
	 * t_reply_with_body() drops the reference t_lookup_ident() took. */
	tmb.t_get_reply_totag(t->uas.request, &totag);
	if(tmb.t_reply_with_body(t, code, reason, NULL, NULL, &totag) < 0)
		LM_WARN("call %llx: cannot send %d\n", (unsigned long long)ref, code);
	tmb.t_sett(orig, T_BR_UNDEFINED);
	return 0;
}

/*
 * The engine process serving the workers' requests (see pp_requests.h).
 */
#include <string.h>

#include "pp_requests.h"
#include "pp_stats.h"

static char *pp_shm_copy(const char *s)
{
	size_t len = strlen(s);
	char *c = shm_malloc(len + 1);

	if(c)
		memcpy(c, s, len + 1);
	else
		LM_ERR("out of shared memory\n");
	return c;
}

static void pp_listing(pushpark_engine *engine, const pp_req_t *r, pp_rpl_t *rpl)
{
	char *json = NULL;

	switch(r->h.op) {
		case PP_OP_STATS:
			rpl->result = pushpark_stats_json(engine, &json);
			break;
		case PP_OP_PARKED:
			rpl->result = pushpark_parked_json_page(engine, r->h.offset, r->h.limit, &json);
			break;
		default:
			rpl->result = pushpark_devices_json_page(
					engine, pp_req_str(r, 0), r->h.offset, r->h.limit, &json);
	}
	if(rpl->result == PUSHPARK_OK) {
		rpl->json = pp_shm_copy(json);
		if(rpl->json == NULL)
			rpl->result = PUSHPARK_ERR_INTERNAL;
	}
	pushpark_string_free(json);
}

/* "Contact: *" as the engine takes it, store.unregister_keeps_binding included. */
static void pp_remove_all(pushpark_engine *engine, const char *aor)
{
	pushpark_register_outcome out;

	if(pushpark_register(engine, aor, "*", NULL, 0, &out) != PUSHPARK_OK)
		LM_WARN("devices of %s not removed: %s\n", aor, pushpark_last_error());
	else
		LM_INFO("%s unregistered every contact: push devices %s\n", aor,
				out.removed ? "removed" : "none removed");
}

/* FORK: the destination set's push-capable contacts follow the park strings in pairs. */
static pushpark_result pp_fork(pushpark_engine *engine, const pp_req_t *r, uint64_t *park_id)
{
	pushpark_contact cs[PP_FORK_MAX_CONTACTS];
	const char *inst;
	int i, n = r->h.nstrs > 4 ? (r->h.nstrs - 4) / 2 : 0;

	for(i = 0; i < n; i++) {
		cs[i].uri = pp_req_str(r, 4 + 2 * i);
		inst = pp_req_str(r, 5 + 2 * i);
		cs[i].instance = *inst ? inst : NULL;
		cs[i].ringing = (r->h.ringing >> i) & 1;
	}
	return pushpark_fork(engine, pp_req_str(r, 0), pp_req_str(r, 1), pp_req_str(r, 2),
			pp_req_str(r, 3), r->h.host_ref, PP_DATA_FORKED | r->h.host_data,
			r->h.timeout_ms, n ? cs : NULL, n, park_id);
}

/* tm (or the host's own) destroyed the transaction: the engine ends the call however it
 * held it. A call still parked was ended by the host on its own; a resumed one only stops
 * its second-device branches; a forked one ends with its final status. */
static void pp_ended(pushpark_engine *engine, const pp_req_t *r)
{
	pushpark_call_state was;

	if(pushpark_call_end(engine, r->h.host_ref, r->h.status, &was) == PUSHPARK_OK
			&& was == PUSHPARK_CALL_PARKED)
		LM_WARN("call %llx ended by the host while parked\n",
				(unsigned long long)r->h.host_ref);
}

void pp_request_serve(pushpark_engine *engine, const pp_req_t *r)
{
	pp_rpl_t rpl;
	pushpark_register_outcome out;
	pushpark_result rc;

	if(pp_ipc_expired(r)) {
		/* E.g. pushpark_park() returned -1 already: parking the call now would push the
		 * phone for a call the script has answered or relayed. */
		LM_WARN("request %d (%s) not served: its sender stopped waiting (ipc_timeout)\n",
				r->h.op, pp_req_str(r, 0));
		return;
	}
	memset(&rpl, 0, sizeof(rpl));
	switch(r->h.op) {
		case PP_OP_PARK:
			rpl.result = pushpark_park(engine, pp_req_str(r, 0), pp_req_str(r, 1),
					pp_req_str(r, 2), pp_req_str(r, 3), r->h.host_ref, r->h.host_data,
					r->h.timeout_ms, &rpl.park_id);
			if(rpl.result != PUSHPARK_OK && rpl.result != PUSHPARK_ERR_NO_DEVICE)
				LM_WARN("park %s: %s\n", pp_req_str(r, 0), pushpark_last_error());
			break;
		case PP_OP_FORK:
			rpl.result = pp_fork(engine, r, &rpl.park_id);
			if(rpl.result != PUSHPARK_OK && rpl.result != PUSHPARK_ERR_NO_DEVICE)
				LM_WARN("fork %s: %s\n", pp_req_str(r, 0), pushpark_last_error());
			break;
		case PP_OP_REGISTER:
			rc = pushpark_register_path(engine, pp_req_str(r, 0), pp_req_str(r, 1),
					*pp_req_str(r, 2) ? pp_req_str(r, 2) : NULL, r->h.expires,
					*pp_req_str(r, 3) ? pp_req_str(r, 3) : NULL, r->h.cseq,
					*pp_req_str(r, 4) ? pp_req_str(r, 4) : NULL, &out);
			if(rc != PUSHPARK_OK)
				LM_WARN("register %s: %s: %s\n", pp_req_str(r, 0), pushpark_result_name(rc),
						pushpark_last_error());
			else
				LM_DBG("register %s: push %d stored %d removed %d resumed %u\n",
						pp_req_str(r, 0), out.push_capable, out.stored, out.removed,
						out.resumed);
			break;
		case PP_OP_REMOVE_ALL:
			pp_remove_all(engine, pp_req_str(r, 0));
			break;
		case PP_OP_CANCEL:
			if(pushpark_cancel(engine, r->h.host_ref) == PUSHPARK_OK)
				update_stat(pp_st_cancelled, 1);
			break;
		case PP_OP_COMPLETED:
			/* The call's final reply went out: devices woken for it from now on get
			 * the INVITE + CANCEL of a late wake, with this status as the cause. */
			pushpark_call_completed(engine, r->h.host_ref, r->h.status);
			break;
		case PP_OP_ENDED:
			pp_ended(engine, r);
			break;
		case PP_OP_STATS:
		case PP_OP_PARKED:
		case PP_OP_DEVICES:
			pp_listing(engine, r, &rpl);
			break;
		default:
			LM_CRIT("unknown request %d\n", r->h.op);
			return;
	}
	if(pp_ipc_reply(r, &rpl) < 0 && (r->h.op == PP_OP_PARK || r->h.op == PP_OP_FORK)
			&& rpl.result == PUSHPARK_OK) {
		/* The worker gave up just before the answer: the script handles the call. */
		LM_WARN("call %s parked after its worker stopped waiting: cancelled\n",
				pp_req_str(r, 0));
		pushpark_cancel(engine, r->h.host_ref);
	}
}

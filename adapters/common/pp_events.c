/*
 * Engine events -> host actions (see pp_events.h).
 */
#include <string.h>

#include "pp_events.h"
#include "pp_modparams.h"
#include "pp_requests.h"
#include "pp_stats.h"

/* Events handled per drain before the loop looks at the request pipe again. */
#define PP_EVENT_BATCH 8

/* The call's REJECT as the host replies it: a forked call's through fork_reject. */
int pp_reject_call(const pushpark_event *ev, int code, const char *reason)
{
	uint64_t ref = pushpark_event_get_host_ref(ev), data = pushpark_event_get_host_data(ev);

	if(data & PP_DATA_FORKED)
		return pp_host_fork_reject(ref, code, reason);
	return pp_host_reject(ref, PP_DATA_HOST(data), code, reason);
}

static void pp_reject(pushpark_event *ev)
{
	uint64_t ref = pushpark_event_get_host_ref(ev);
	const char *reason = pushpark_event_get_reason(ev);
	const char *reply_reason = pp_host_reply_reason();
	int code = pushpark_event_get_sip_code(ev), ret;

	if(pp_reply_code) {
		code = pp_reply_code;
		if(reply_reason && *reply_reason)
			reason = reply_reason;
	}
	ret = pp_reject_call(ev, code, reason);
	if(ret == 0)
		LM_INFO("call %llx to %s rejected: %d %s\n", (unsigned long long)ref,
				pushpark_event_get_aor(ev), code, reason);
	else if(ret == 1)
		LM_INFO("call %llx to %s: nobody woke in time, the ringing branches go on\n",
				(unsigned long long)ref, pushpark_event_get_aor(ev));
}

static void pp_push_result(pushpark_event *ev)
{
	const char *reason = pushpark_event_get_reason(ev);
	/* The id the app and Apple's delivery log know the push by. */
	const char *id = pushpark_event_get_push_id(ev);

	/* Only a delivered push rings the call: an unconfirmed one (see pushpark.h) may
	 * never have reached the phone. If it did, the phone's REGISTER resumes the call
	 * and the phone's own 180 reaches the caller. */
	if(strcmp(reason, "unconfirmed") == 0) {
		LM_INFO("push %s to %s device %s unconfirmed: sent, the connection was lost "
				"before the push service answered; the call waits for the device\n",
				id, pushpark_event_get_aor(ev), pushpark_event_get_device(ev));
		return;
	}
	if(strcmp(reason, "delivered") != 0) {
		LM_INFO("push %s to %s device %s failed: %s\n", id, pushpark_event_get_aor(ev),
				pushpark_event_get_device(ev), reason);
		return;
	}
	LM_DBG("push %s to %s device %s delivered\n", id, pushpark_event_get_aor(ev),
			pushpark_event_get_device(ev));
	/* The first delivered push of a call still waiting: once per call. */
	if(pp_provisional_code && pushpark_event_get_first_delivered(ev))
		pp_host_provisional_reply(pushpark_event_get_host_ref(ev));
}

/* A device woken for a call already over gets its INVITE and at once its CANCEL. */
static void pp_late_wake(const pushpark_event *ev, int code, const char *reason)
{
	const char *call_id = pushpark_event_get_call_id(ev), *aor = pushpark_event_get_aor(ev);

	update_stat(pp_st_late_wakes, 1);
	/* The event's contact: the host's binding carries the whole push token, logs never. */
	switch(pp_host_late_wake(ev, code, reason)) {
		case 0:
			LM_INFO("late wake: call %s ended (%d %s) before %s could ring: INVITE + "
					"CANCEL to %s\n",
					call_id, code, reason, aor, pushpark_event_get_contact(ev));
			break;
		case PP_LATE_NO_CONTACT:
			LM_WARN("late wake: call %s: no contact of %s to end it on\n", call_id, aor);
			break;
		default:
			LM_ERR("late wake: call %s: INVITE to %s not sent\n", call_id,
					pushpark_event_get_contact(ev));
	}
}

/* The call of a RESUME or APPEND_BRANCH was over before its branch could be added: answered
 * on another branch or cancelled while the event waited (the worker's word of it had not
 * reached the engine yet). The engine counts the device as ringing and will not wake it
 * late, so it is told here as a late wake would tell it: its app ends the call it shows. */
static void pp_gone(pushpark_engine *engine, pushpark_event *ev)
{
	uint64_t ref = pushpark_event_get_host_ref(ev);
	int code = pp_host_ended(ref);

	if(code < 200) {
		pushpark_call_ended(engine, ref);
		return;
	}
	pushpark_call_completed(engine, ref, code);
	/* The cause as the engine gives late wakes theirs. */
	code = code < 300 ? 200 : code == 487 ? 487 : 480;
	pp_late_wake(ev, code, code == 200 ? "Call completed elsewhere" : "");
}

static void pp_event(pushpark_engine *engine, pushpark_event *ev)
{
	uint64_t ref = pushpark_event_get_host_ref(ev);

	switch(pushpark_event_get_kind(ev)) {
		case PUSHPARK_EVENT_RESUME:
			if(pp_host_resume(ref, PP_DATA_HOST(pushpark_event_get_host_data(ev)), ev) < 0)
				pp_gone(engine, ev);
			break;
		case PUSHPARK_EVENT_REJECT:
			pp_reject(ev);
			break;
		case PUSHPARK_EVENT_APPEND_BRANCH:
			if(pp_host_append(ref, ev) < 0)
				pp_gone(engine, ev);
			break;
		case PUSHPARK_EVENT_LATE_WAKE:
			pp_late_wake(ev, pushpark_event_get_sip_code(ev), pushpark_event_get_reason(ev));
			break;
		case PUSHPARK_EVENT_PUSH_RESULT:
			pp_push_result(ev);
			break;
		case PUSHPARK_EVENT_DEVICE_GONE:
			LM_INFO("device %s of %s removed: APNs says its token is dead (%s)\n",
					pushpark_event_get_device(ev), pushpark_event_get_aor(ev),
					pushpark_event_get_reason(ev));
			break;
		default:
			LM_DBG("event %d ignored\n", pushpark_event_get_kind(ev));
	}
}

void pp_events_drain(pushpark_engine *engine)
{
	pushpark_event *ev;
	int n;

	for(n = 0; n < PP_EVENT_BATCH; n++) {
		if(pushpark_poll(engine, &ev) != PUSHPARK_OK)
			return;
		pp_event(engine, ev);
		pushpark_event_free(ev);
	}
}

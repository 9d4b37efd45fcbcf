/*
 * The host's own data travels with each call: the host_data given to pushpark_park and
 * pushpark_fork comes back on the call's RESUME, APPEND_BRANCH, REJECT and PUSH_RESULT
 * events; the first delivered push of a call still waiting says so on its PUSH_RESULT,
 * exactly once per call; pushpark_call_end says how the engine held a call; and
 * pushpark_reject_waiting ends every call the host still waits an answer for with a
 * REJECT carrying its host_ref and host_data. Each scenario runs on an engine in this
 * process and on a spawned one (pushpark_engine_spawn), whose supervisor carries the
 * events across.
 */
#include "harness.h"

#define HEX64(x) x x x x x x x x

static int spawned;

static pushpark_engine *engine(const struct harness *h, const char *store, const char *park)
{
    char name[64], *cfg;
    pushpark_engine *e = NULL;
    snprintf(name, sizeof name, "%s-%s", store, spawned ? "spawned" : "local");
    cfg = config_json(h, name, park);
    if (spawned)
        CHECK_OK(pushpark_engine_spawn(cfg, &e));
    else
        CHECK_OK(pushpark_engine_new(cfg, &e));
    free(cfg);
    return e;
}

static void park(pushpark_engine *e, const char *aor, uint64_t host_ref, uint64_t host_data,
                 uint32_t timeout_ms)
{
    CHECK_OK(pushpark_park(e, "call@test", aor, "sip:zed@example.com", "Zed", host_ref,
                           host_data, timeout_ms, NULL));
}

static void fork_call(pushpark_engine *e, const char *aor, uint64_t host_ref, uint64_t host_data,
                      uint32_t timeout_ms)
{
    CHECK_OK(pushpark_fork(e, "fork@test", aor, "sip:zed@example.com", "Zed", host_ref,
                           host_data, timeout_ms, NULL, 0, NULL));
}

/* Waits for `n` PUSH_RESULTs of the call, each delivered and carrying its host_data;
 * returns how many said first_delivered. Any other event of the call fails the test. */
static int push_results(pushpark_engine *e, uint64_t host_ref, uint64_t host_data, int n)
{
    int firsts = 0;
    while (n > 0) {
        pushpark_event *ev = next_event(e, WAIT_MS);
        CHECK(ev != NULL);
        if (pushpark_event_get_host_ref(ev) == host_ref) {
            CHECK(pushpark_event_get_kind(ev) == PUSHPARK_EVENT_PUSH_RESULT);
            CHECK(strcmp(pushpark_event_get_reason(ev), "delivered") == 0);
            CHECK(pushpark_event_get_host_data(ev) == host_data);
            firsts += pushpark_event_get_first_delivered(ev);
            n--;
        }
        pushpark_event_free(ev);
    }
    return firsts;
}

/* The call's next event, of `kind`, carrying host_data. */
static pushpark_event *expect_with_data(pushpark_engine *e, pushpark_event_kind kind,
                                        uint64_t host_ref, uint64_t host_data)
{
    pushpark_event *ev = expect_event(e, kind, host_ref, 1);
    CHECK(pushpark_event_get_host_data(ev) == host_data);
    CHECK(pushpark_event_get_first_delivered(ev) == 0);
    return ev;
}

/* Parked: two devices pushed (one first_delivered), RESUME and APPEND_BRANCH. */
static void park_resume_append(const struct harness *h)
{
    const char *aor = "sip:gina@example.com";
    const uint64_t data = 0xfeedface00000032ull;
    pushpark_engine *e = engine(h, "park", "\"recent_register_ms\": 0");
    pushpark_call_state was = 0;

    register_device(e, aor, "gina", HEX64("a1a1a1a1"), "<urn:uuid:a1>", 3600);
    register_device(e, aor, "gina", HEX64("a2a2a2a2"), "<urn:uuid:a2>", 3600);
    park(e, aor, 50, data, 0);
    CHECK(push_results(e, 50, data, 2) == 1);

    CHECK(register_device(e, aor, "gina", HEX64("a1a1a1a1"), "<urn:uuid:a1>", 3600).resumed == 1);
    pushpark_event_free(expect_with_data(e, PUSHPARK_EVENT_RESUME, 50, data));
    register_device(e, aor, "gina", HEX64("a2a2a2a2"), "<urn:uuid:a2>", 3600);
    pushpark_event_free(expect_with_data(e, PUSHPARK_EVENT_APPEND_BRANCH, 50, data));

    CHECK_OK(pushpark_call_end(e, 50, 200, &was));
    CHECK(was == PUSHPARK_CALL_RESUMED);
    was = 0;
    CHECK_RESULT(pushpark_call_end(e, 50, 200, &was), PUSHPARK_ERR_NOT_FOUND);
    CHECK(was == 0);
    pushpark_engine_free(e);
}

/* Forked: two devices pushed (one first_delivered), APPEND_BRANCH, REJECT at the deadline;
 * and a parked call's REJECT at its timeout. */
static void fork_and_timeouts(const struct harness *h)
{
    const char *hank = "sip:hank@example.com", *ivy = "sip:ivy@example.com";
    const uint64_t fork_data = (1ull << 32) | 7, park_data = UINT64_MAX;
    pushpark_engine *e = engine(h, "fork", "\"recent_register_ms\": 0");

    register_device(e, hank, "hank", HEX64("b1b1b1b1"), "<urn:uuid:b1>", 3600);
    register_device(e, hank, "hank", HEX64("b2b2b2b2"), "<urn:uuid:b2>", 3600);
    fork_call(e, hank, 60, fork_data, 3000);
    CHECK(push_results(e, 60, fork_data, 2) == 1);
    register_device(e, hank, "hank", HEX64("b1b1b1b1"), "<urn:uuid:b1>", 3600);
    pushpark_event_free(expect_with_data(e, PUSHPARK_EVENT_APPEND_BRANCH, 60, fork_data));

    register_device(e, ivy, "ivy", HEX64("c1c1c1c1"), NULL, 3600);
    park(e, ivy, 70, park_data, 1000);
    CHECK(push_results(e, 70, park_data, 1) == 1);
    pushpark_event *ev = expect_with_data(e, PUSHPARK_EVENT_REJECT, 70, park_data);
    CHECK(pushpark_event_get_sip_code(ev) == 480);
    pushpark_event_free(ev);
    ev = expect_with_data(e, PUSHPARK_EVENT_REJECT, 60, fork_data);
    pushpark_event_free(ev);
    pushpark_engine_free(e);
}

/* What pushpark_call_end says, and that it ends the call. */
static void call_end_states(const struct harness *h)
{
    const char *jo = "sip:jo@example.com";
    pushpark_engine *e = engine(h, "end", "\"recent_register_ms\": 0");
    pushpark_call_state was = 0;

    register_device(e, jo, "jo", HEX64("d1d1d1d1"), NULL, 3600);
    park(e, jo, 90, 1, 0);
    fork_call(e, jo, 91, 2, 0);
    CHECK_OK(pushpark_call_end(e, 90, 0, &was));
    CHECK(was == PUSHPARK_CALL_PARKED);
    CHECK_OK(pushpark_call_end(e, 91, 487, NULL));
    CHECK_RESULT(pushpark_call_end(e, 91, 487, &was), PUSHPARK_ERR_NOT_FOUND);
    CHECK_RESULT(pushpark_call_end(NULL, 91, 487, &was), PUSHPARK_ERR_NULL_ARG);
    CHECK(was == PUSHPARK_CALL_PARKED);
    fork_call(e, jo, 92, 3, 0);
    CHECK_OK(pushpark_call_end(e, 92, 200, &was));
    CHECK(was == PUSHPARK_CALL_FORKED);
    expect_nothing_for(e, 90);
    expect_nothing_for(e, 91);
    expect_nothing_for(e, 92);
    pushpark_engine_free(e);
}

/* The host stops: each call it still waits an answer for gets one REJECT with its data. */
static void reject_waiting(const struct harness *h)
{
    const char *kim = "sip:kim@example.com", *lee = "sip:lee@example.com";
    const char *max = "sip:max@example.com", *ned = "sip:ned@example.com";
    pushpark_engine *e = engine(h, "stop", "\"recent_register_ms\": 0");
    int seen[4] = {0, 0, 0, 0};

    register_device(e, kim, "kim", HEX64("e1e1e1e1"), NULL, 3600);
    register_device(e, lee, "lee", HEX64("e2e2e2e2"), NULL, 3600);
    register_device(e, max, "max", HEX64("e3e3e3e3"), NULL, 3600);
    register_device(e, ned, "ned", HEX64("e4e4e4e4"), NULL, 3600);
    park(e, kim, 80, 800, 0);
    CHECK(push_results(e, 80, 800, 1) == 1);
    fork_call(e, lee, 81, 810 | (1ull << 32), 0);
    CHECK(push_results(e, 81, 810 | (1ull << 32), 1) == 1);
    park(e, max, 82, 820, 0);
    CHECK(push_results(e, 82, 820, 1) == 1);
    park(e, ned, 83, 830, 0);
    CHECK(push_results(e, 83, 830, 1) == 1);
    /* 83 resumed and polled: the host relayed it, nothing to answer. */
    register_device(e, ned, "ned", HEX64("e4e4e4e4"), NULL, 3600);
    pushpark_event_free(expect_with_data(e, PUSHPARK_EVENT_RESUME, 83, 830));
    /* 82 resumed, its RESUME not polled yet: it becomes the REJECT. */
    CHECK(register_device(e, max, "max", HEX64("e3e3e3e3"), NULL, 3600).resumed == 1);

    CHECK_RESULT(pushpark_reject_waiting(e, 200, "OK"), PUSHPARK_ERR_INVALID);
    CHECK_RESULT(pushpark_reject_waiting(e, 503, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_reject_waiting(NULL, 503, "x"), PUSHPARK_ERR_NULL_ARG);
    CHECK_OK(pushpark_reject_waiting(e, 503, "Service Unavailable"));
    /* Queued before it returned: polled at once, without waiting on the event fd. */
    pushpark_event *ev;
    while (pushpark_poll(e, &ev) == PUSHPARK_OK) {
        uint64_t ref = pushpark_event_get_host_ref(ev);
        pushpark_event_kind k = pushpark_event_get_kind(ev);
        if (k == PUSHPARK_EVENT_REJECT) {
            CHECK(ref >= 80 && ref <= 82);
            CHECK(pushpark_event_get_host_data(ev) == (ref * 10 | (ref == 81 ? 1ull << 32 : 0)));
            CHECK(pushpark_event_get_sip_code(ev) == 503);
            CHECK(strcmp(pushpark_event_get_reason(ev), "Service Unavailable") == 0);
            seen[ref - 80]++;
        } else {
            CHECK(!"an event other than the REJECTs");
        }
        pushpark_event_free(ev);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 0);
    CHECK_RESULT(pushpark_call_end(e, 80, 0, NULL), PUSHPARK_ERR_NOT_FOUND);
    CHECK_RESULT(pushpark_call_end(e, 82, 0, NULL), PUSHPARK_ERR_NOT_FOUND);
    CHECK_OK(pushpark_call_end(e, 83, 0, NULL));
    pushpark_engine_free(e);
}

/* Nothing queued, nothing announced: the REJECT is still there for the first poll. */
static void reject_waiting_at_once(const struct harness *h)
{
    const char *kim = "sip:kim@example.com";
    pushpark_engine *e = engine(h, "stop-now", "\"recent_register_ms\": 0");
    pushpark_event *ev = NULL;

    register_device(e, kim, "kim", HEX64("e5e5e5e5"), NULL, 3600);
    park(e, kim, 90, 900, 0);
    CHECK(push_results(e, 90, 900, 1) == 1);
    CHECK(next_event(e, 100) == NULL);
    CHECK_OK(pushpark_reject_waiting(e, 503, "Service Unavailable"));
    CHECK_OK(pushpark_poll(e, &ev));
    CHECK(pushpark_event_get_kind(ev) == PUSHPARK_EVENT_REJECT);
    CHECK(pushpark_event_get_host_ref(ev) == 90 && pushpark_event_get_host_data(ev) == 900);
    pushpark_event_free(ev);
    pushpark_engine_free(e);
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    for (spawned = 0; spawned < 2; spawned++) {
        park_resume_append(&h);
        fork_and_timeouts(&h);
        call_end_states(&h);
        reject_waiting(&h);
        reject_waiting_at_once(&h);
    }
    puts("host_data: all checks passed");
    return 0;
}

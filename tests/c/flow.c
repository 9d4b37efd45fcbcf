/*
 * The main flows through the C ABI against the mock APNs over TLS: park -> push ->
 * REGISTER -> RESUME via the event fd; no device; two devices (APPEND_BRANCH); two calls
 * to one user; duplicate REGISTER; the register-before-park race; a dead token (410)
 * -> DEVICE_GONE + REJECT; then the statistics.
 * tests/c_harness.rs checks the mock received ALICE's push with the right headers and
 * payload, under the id its PUSH_RESULT gave (told at the sync "alice-push ID"), and
 * scripts DEAD_TOKEN to be answered 410 Unregistered when asked: after the device
 * registered, since a 410 only kills a token that registered before the 410's timestamp.
 */
#include "harness.h"

#define HEX64(x) x x x x x x x x
#define TOKEN_ALICE HEX64("aaaaaaaa")
#define TOKEN_BOB1 HEX64("b1b1b1b1")
#define TOKEN_BOB2 HEX64("b2b2b2b2")
#define TOKEN_CAROL HEX64("cccccccc")
#define TOKEN_DAVE HEX64("dddddddd")
#define DEAD_TOKEN HEX64("deaddead")

/* Waits for the push to `aor` to be answered, and checks it was delivered and carries
 * the host_ref of the call it was sent for (still parked) and the push's id (a UUID),
 * copied to `push_id` unless NULL. */
static void expect_push_result(pushpark_engine *e, const char *aor, uint64_t host_ref,
                               char push_id[37])
{
    for (;;) {
        pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_PUSH_RESULT, 0, 1);
        int match = strcmp(pushpark_event_get_aor(ev), aor) == 0;
        if (match) {
            CHECK(strcmp(pushpark_event_get_reason(ev), "delivered") == 0);
            CHECK(pushpark_event_get_host_ref(ev) == host_ref);
            CHECK(strlen(pushpark_event_get_push_id(ev)) == 36);
            if (push_id)
                strcpy(push_id, pushpark_event_get_push_id(ev));
        }
        pushpark_event_free(ev);
        if (match)
            return;
    }
}

static void park(pushpark_engine *e, const char *call_id, const char *aor, uint64_t host_ref)
{
    uint64_t id = 0;
    CHECK_OK(pushpark_park(e, call_id, aor, "sip:zed@example.com", "Zed Caller", host_ref, 0, 0,
                           &id));
    CHECK(id != 0);
}

static void no_device(pushpark_engine *e)
{
    uint64_t id = 7;
    CHECK_RESULT(pushpark_park(e, "call-nobody@test", "sip:nobody@example.com",
                               "sip:zed@example.com", NULL, 1000, 0, 0, &id),
                 PUSHPARK_ERR_NO_DEVICE);
    CHECK(id == 7);
}

static void park_push_register_resume(pushpark_engine *e)
{
    const char *aor = "sip:alice@example.com";
    pushpark_register_outcome out = register_device(e, aor, "alice", TOKEN_ALICE, NULL, 3600);
    CHECK(out.push_capable == 1 && out.stored == 1 && out.removed == 0 && out.resumed == 0);

    park(e, "call-alice@test", aor, 1);
    char push_id[37], tag[64];
    expect_push_result(e, aor, 1, push_id);
    /* The runner checks it is the id APNs got the push with. */
    snprintf(tag, sizeof tag, "alice-push %s", push_id);
    sync_with_runner(tag);

    /* The woken app registers: exactly one RESUME for the parked call. */
    out = register_device(e, aor, "alice", TOKEN_ALICE, NULL, 3600);
    CHECK(out.resumed == 1);
    pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_RESUME, 1, 1);
    CHECK(strcmp(pushpark_event_get_aor(ev), aor) == 0);
    /* The device key is the token, never shown whole. */
    CHECK(strcmp(pushpark_event_get_device(ev), "aaaaaaaa...") == 0);
    CHECK(strstr(pushpark_event_get_contact(ev), "pn-prid=aaaaaaaa...;") != NULL);
    CHECK(strstr(pushpark_event_get_contact(ev), TOKEN_ALICE) == NULL);
    /* Registered here: the host's own location table has the device. */
    CHECK(strcmp(pushpark_event_get_relay_uri(ev), "") == 0);
    CHECK(strcmp(pushpark_event_get_relay_path(ev), "") == 0);
    CHECK(strcmp(pushpark_event_get_call_id(ev), "call-alice@test") == 0);
    CHECK(strcmp(pushpark_event_get_caller_uri(ev), "sip:zed@example.com") == 0);
    CHECK(strcmp(pushpark_event_get_caller_name(ev), "Zed Caller") == 0);
    CHECK(pushpark_event_get_park_id(ev) != 0);
    pushpark_event_free(ev);

    /* A duplicate REGISTER gives no second RESUME (nor an APPEND_BRANCH). */
    out = register_device(e, aor, "alice", TOKEN_ALICE, NULL, 3600);
    CHECK(out.resumed == 0);
    expect_nothing_for(e, 1);
    CHECK_OK(pushpark_call_ended(e, 1));
}

static void two_devices(pushpark_engine *e)
{
    const char *aor = "sip:bob@example.com";
    const char *b1 = "<urn:uuid:00000000-0000-0000-0000-0000000000b1>";
    const char *b2 = "<urn:uuid:00000000-0000-0000-0000-0000000000b2>";
    register_device(e, aor, "bob", TOKEN_BOB1, b1, 3600);
    register_device(e, aor, "bob", TOKEN_BOB2, b2, 3600);

    park(e, "call-bob@test", aor, 10);
    expect_push_result(e, aor, 10, NULL);
    expect_push_result(e, aor, 10, NULL);

    CHECK(register_device(e, aor, "bob", TOKEN_BOB1, b1, 3600).resumed == 1);
    pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_RESUME, 10, 1);
    CHECK(strstr(pushpark_event_get_device(ev), "0b1") != NULL);
    pushpark_event_free(ev);

    register_device(e, aor, "bob", TOKEN_BOB2, b2, 3600);
    ev = expect_event(e, PUSHPARK_EVENT_APPEND_BRANCH, 10, 1);
    CHECK(strstr(pushpark_event_get_device(ev), "0b2") != NULL);
    pushpark_event_free(ev);

    /* Once the host says the call ended, a device registering changes nothing. */
    CHECK_OK(pushpark_call_ended(e, 10));
    register_device(e, aor, "bob", TOKEN_BOB2, b2, 3600);
    expect_nothing_for(e, 10);
}

static void two_calls_one_user(pushpark_engine *e)
{
    const char *aor = "sip:carol@example.com";
    register_device(e, aor, "carol", TOKEN_CAROL, NULL, 3600);
    park(e, "call-carol-1@test", aor, 20);
    park(e, "call-carol-2@test", aor, 21);
    expect_push_result(e, aor, 20, NULL);
    CHECK(register_device(e, aor, "carol", TOKEN_CAROL, NULL, 3600).resumed == 2);
    int seen20 = 0, seen21 = 0;
    for (int i = 0; i < 2; i++) {
        pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_RESUME, 0, 1);
        uint64_t ref = pushpark_event_get_host_ref(ev);
        seen20 += ref == 20;
        seen21 += ref == 21;
        pushpark_event_free(ev);
    }
    CHECK(seen20 == 1 && seen21 == 1);
    CHECK_OK(pushpark_call_ended(e, 20));
    CHECK_OK(pushpark_call_ended(e, 21));
}

static void dead_token(pushpark_engine *e)
{
    const char *aor = "sip:erin@example.com";
    register_device(e, aor, "erin", DEAD_TOKEN, NULL, 3600);
    sync_with_runner("kill-dead-token");
    park(e, "call-erin@test", aor, 30);

    /* Both come, in either order: the binding's removal and the call's end. */
    int gone = 0, rejected = 0;
    while (!(gone && rejected)) {
        pushpark_event *ev = next_event(e, WAIT_MS);
        CHECK(ev != NULL);
        switch (pushpark_event_get_kind(ev)) {
        case PUSHPARK_EVENT_DEVICE_GONE:
            CHECK(strcmp(pushpark_event_get_aor(ev), aor) == 0);
            CHECK(strcmp(pushpark_event_get_device(ev), "deaddead...") == 0);
            CHECK(pushpark_event_get_host_ref(ev) == 0);
            gone++;
            break;
        case PUSHPARK_EVENT_REJECT:
            CHECK(pushpark_event_get_host_ref(ev) == 30);
            CHECK(pushpark_event_get_sip_code(ev) == 480);
            rejected++;
            break;
        case PUSHPARK_EVENT_PUSH_RESULT:
            break;
        default:
            CHECK(!"an unexpected event");
        }
        pushpark_event_free(ev);
    }
    CHECK(gone == 1 && rejected == 1);

    /* The binding is gone from the store: the next call gets "no device" at once. */
    char *json = NULL;
    CHECK_OK(pushpark_devices_json_page(e, aor, 0, 100, &json));
    CHECK(strcmp(json, "{\"total\":0,\"offset\":0,\"items\":[]}") == 0);
    pushpark_string_free(json);
    CHECK_RESULT(pushpark_park(e, "call-erin-2@test", aor, "sip:zed@example.com", NULL, 31, 0, 0,
                               NULL),
                 PUSHPARK_ERR_NO_DEVICE);
}

static void check_stats(pushpark_engine *e)
{
    char *json = NULL;
    CHECK_OK(pushpark_stats_json(e, &json));
    printf("stats: %s\n", json);
    CHECK(json[0] == '{' && strstr(json, "\"resumed\":4") != NULL);
    pushpark_string_free(json);

    pushpark_stats st;
    memset(&st, 0xFF, sizeof st);
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.size == sizeof st);
    CHECK(st.parked_now == 0);
    CHECK(st.parked_total == 5);
    CHECK(st.resumed == 4);
    CHECK(st.rejected_timeout == 0);
    CHECK(st.rejected_push_failed == 1);
    CHECK(st.cancelled == 0);
    CHECK(st.park_no_device == 2);
    /* Carol's two calls may share one push (coalescing). */
    CHECK(st.pushes_delivered == 4 || st.pushes_delivered == 5);
    CHECK(st.pushes_sent >= st.pushes_delivered + st.pushes_failed_permanent);
    CHECK(st.pushes_failed_permanent == 1);
    CHECK(st.devices_gone == 1);
    CHECK(st.resume_latency_p50_us <= st.resume_latency_p99_us);
}

/*
 * The host's location lookup failed, then the REGISTER landed, then the host parked:
 * the call resumes at once, without another REGISTER or the timeout.
 */
static void register_before_park(const struct harness *h)
{
    pushpark_engine *e = engine_new(h, "race", "\"recent_register_ms\": 60000");
    const char *aor = "sip:dave@example.com";
    register_device(e, aor, "dave", TOKEN_DAVE, NULL, 3600);
    park(e, "call-dave@test", aor, 40);
    pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_RESUME, 40, 1);
    CHECK(strcmp(pushpark_event_get_aor(ev), aor) == 0);
    pushpark_event_free(ev);
    pushpark_engine_free(e);
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    /* The race window is off here: these devices "registered long ago". */
    pushpark_engine *e = engine_new(&h, "flow", "\"recent_register_ms\": 0");
    no_device(e);
    park_push_register_resume(e);
    two_devices(e);
    two_calls_one_user(e);
    dead_token(e);
    check_stats(e);
    pushpark_engine_free(e);
    register_before_park(&h);
    puts("flow: all checks passed");
    return 0;
}

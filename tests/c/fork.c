/*
 * Issue 9 through the C ABI: the contact rules (used in a fork()ed child, without an
 * engine), refusals with bounded reason phrases, host_ref 0, REGISTER order, a forked
 * call (APPEND_BRANCH for the pushed devices only) and the LATE_WAKE of a device pushed
 * for a call answered elsewhere, with the event accessors and no whole token anywhere.
 */
#include "harness.h"

#include <sys/wait.h>
#include <unistd.h>

#define HEX64(x) x x x x x x x x
#define TOKEN_RING HEX64("a1a1a1a1")
#define TOKEN_STORED HEX64("a2a2a2a2")
#define TOKEN_HELD HEX64("a3a3a3a3")
#define TOKEN_ORDER HEX64("a4a4a4a4")

static const char *const AOR = "sip:fiona@example.com";

static void check_reason_phrase(void)
{
    const char *detail = pushpark_last_error();
    CHECK(strlen(detail) > 0 && strlen(detail) <= 200);
    CHECK(strpbrk(detail, "\r\n") == NULL);
    CHECK(strstr(detail, "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1") == NULL);
}

/* What the rules say of each Contact; run in a fork()ed child as a SIP worker would. */
static void contact_checks(const pushpark_contact_rules *rules)
{
    const char *provider = "untouched";
    CHECK_OK(pushpark_contact_check(rules, "<sip:f@h;pn-provider=apns;pn-prid=" TOKEN_RING
                                           ";pn-param=" PN_PARAM ">", &provider));
    CHECK(provider != NULL && strcmp(provider, "apns") == 0);
    CHECK_OK(pushpark_contact_check(rules, "<sip:f@h>, <sip:f@h;pn-provider=apns.dev;pn-prid=" TOKEN_RING
                                           ":voip;pn-param=TESTTEAM01.com.example.app.remote&voip>",
                                    &provider));
    CHECK(strcmp(provider, "apns.dev") == 0);
    CHECK_OK(pushpark_contact_check(rules, "<sip:f@192.0.2.1>", &provider));
    CHECK(provider == NULL);
    CHECK_OK(pushpark_contact_check(rules, "<sip:f@192.0.2.1>", NULL));

    provider = "untouched";
    CHECK_RESULT(pushpark_contact_check(rules, "<sip:f@h;pn-provider=fcm;pn-prid=x>", &provider),
                 PUSHPARK_ERR_UNSUPPORTED);
    check_reason_phrase();
    CHECK_RESULT(pushpark_contact_check(rules, "<sip:f@h;pn-provider=apns;pn-prid=" TOKEN_RING
                                               ";pn-param=OTHERTEAM1.com.example.app.voip>",
                                        &provider),
                 PUSHPARK_ERR_INVALID);
    check_reason_phrase();
    CHECK(strstr(pushpark_last_error(), "Team ID") != NULL);
    CHECK_RESULT(pushpark_contact_check(rules, "<sip:f@h;pn-provider=apns;pn-prid=" TOKEN_RING
                                               "%0D%0Azz;pn-param=" PN_PARAM ">",
                                        &provider),
                 PUSHPARK_ERR_INVALID);
    check_reason_phrase();
    CHECK(strcmp(provider, "untouched") == 0);

    /* However big the input, the reason phrase stays short. */
    size_t n = 100000;
    char *huge = malloc(n + 1);
    CHECK(huge != NULL);
    memset(huge, 'a', n);
    memcpy(huge, "sip:f@h;pn-provider=", 20);
    huge[n] = 0;
    CHECK_RESULT(pushpark_contact_check(rules, huge, &provider), PUSHPARK_ERR_INVALID);
    check_reason_phrase();
    free(huge);

    CHECK_RESULT(pushpark_contact_check(NULL, "<sip:f@h>", &provider), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_contact_check(rules, NULL, &provider), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_contact_check(rules, "\xC3\x28", &provider), PUSHPARK_ERR_UTF8);
}

/* An Android-only configuration names FCM devices' service "fcm" (no file is read). */
static void fcm_provider(void)
{
    pushpark_contact_rules *rules = NULL;
    const char *provider = NULL;
    CHECK_OK(pushpark_contact_rules_new("{\"fcm\": {\"service_account_file\": \"/none.json\"}}",
                                        &rules));
    CHECK_OK(pushpark_contact_check(rules, "<sip:f@h;pn-provider=fcm;pn-prid=abc:APA91b-x_y;"
                                           "pn-param=my-project-1>", &provider));
    CHECK(provider != NULL && strcmp(provider, "fcm") == 0);
    CHECK_RESULT(pushpark_contact_check(rules, "<sip:f@h;pn-provider=apns;pn-prid=" TOKEN_RING
                                               ";pn-param=" PN_PARAM ">", &provider),
                 PUSHPARK_ERR_UNSUPPORTED);
    pushpark_contact_rules_free(rules);
}

static int matches(const char *device, const char *instance)
{
    int m = -1;
    CHECK_OK(pushpark_instance_matches(device, instance, strlen(instance), &m));
    CHECK(m == 0 || m == 1);
    return m;
}

/* A +sip.instance as a location table keeps it against an event's device key: URNs
 * compared as URNs, whatever the spelling. */
static void instance_matching(void)
{
    CHECK(matches("urn:uuid:0c67-ab", "\"<URN:UUID:0C67-AB>\""));
    CHECK(matches("urn:gsma:imei:3580-AB", "<Urn:GSMA:imei:3580-AB>"));
    CHECK(!matches("urn:gsma:imei:3580-ab", "<urn:gsma:imei:3580-AB>"));
    CHECK(matches("Device-1", " \"Device-1\" "));
    CHECK(!matches("", "<>"));
    CHECK(!matches("", ""));
    CHECK(!matches("urn:uuid:1", "<urn:uuid:12>"));
    int m = -1;
    CHECK_OK(pushpark_instance_matches("urn:uuid:1", NULL, 0, &m));
    CHECK(m == 0);
    CHECK_RESULT(pushpark_instance_matches(NULL, "x", 1, &m), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_instance_matches("x", NULL, 1, &m), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_instance_matches("x", "x", 1, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_instance_matches("x", "\xff", 1, &m), PUSHPARK_ERR_UTF8);
    /* Only len bytes are read: no NUL needed. */
    CHECK_OK(pushpark_instance_matches("urn:uuid:ab", "<urn:uuid:AB>garbage", 13, &m));
    CHECK(m == 1);
}

static void rules_survive_fork(const struct harness *h)
{
    pushpark_contact_rules *rules = NULL;
    CHECK_RESULT(pushpark_contact_rules_new(NULL, &rules), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_contact_rules_new("{", &rules), PUSHPARK_ERR_CONFIG);
    char *cfg = config_json(h, "rules", "");
    CHECK_RESULT(pushpark_contact_rules_new(cfg, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK(rules == NULL);
    CHECK_OK(pushpark_contact_rules_new(cfg, &rules));
    free(cfg);
    fflush(NULL);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        contact_checks(rules);
        pushpark_contact_rules_free(rules);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    contact_checks(rules);
    pushpark_contact_rules_free(rules);
    pushpark_contact_rules_free(NULL);
}

static void bounded_errors_and_host_ref_0(pushpark_engine *e)
{
    size_t n = 200000;
    char *aor = malloc(n + 1);
    CHECK(aor != NULL);
    memset(aor, 'x', n);
    aor[n] = 0;
    CHECK_RESULT(pushpark_register(e, aor, "<sip:f@h>", NULL, 60, NULL), PUSHPARK_ERR_INVALID);
    CHECK(strlen(pushpark_last_error()) <= 200);
    free(aor);

    uint64_t id = 99;
    CHECK_RESULT(pushpark_park(e, "c", AOR, "sip:zed@example.com", NULL, 0, 0, 0, &id),
                 PUSHPARK_ERR_INVALID);
    CHECK_RESULT(pushpark_fork(e, "c", AOR, "sip:zed@example.com", NULL, 0, 0, 0, NULL, 0, &id),
                 PUSHPARK_ERR_INVALID);
    CHECK(strstr(pushpark_last_error(), "host_ref") != NULL && id == 99);
    CHECK_RESULT(pushpark_fork(e, "c", AOR, "sip:zed@example.com", NULL, 1, 0, 0, NULL, 1, &id),
                 PUSHPARK_ERR_NULL_ARG);
    pushpark_contact bad = {NULL, NULL, 0};
    CHECK_RESULT(pushpark_fork(e, "c", AOR, "sip:zed@example.com", NULL, 1, 0, 0, &bad, 1, &id),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK(strstr(pushpark_last_error(), "contacts[0].uri") != NULL);
    CHECK_RESULT(pushpark_fork(e, "c", AOR, "sip:zed@example.com", NULL, 1, 0, 0, NULL, 0, &id),
                 PUSHPARK_ERR_NO_DEVICE);
    CHECK(id == 99);
    CHECK_RESULT(pushpark_call_completed(NULL, 1, 200), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_call_completed(e, 1, 200), PUSHPARK_ERR_NOT_FOUND);
}

static void register_order(pushpark_engine *e)
{
    const char *aor = "sip:otto@example.com";
    char *contact = push_contact("otto", TOKEN_ORDER);
    pushpark_register_outcome out;
    CHECK_OK(pushpark_register_ordered(e, aor, contact, NULL, 600, "reg@h", 7, &out));
    CHECK(out.stored == 1);
    /* The unREGISTER sent before it arrives late: ignored. */
    CHECK_OK(pushpark_register_ordered(e, aor, contact, NULL, 0, "reg@h", 6, &out));
    CHECK(out.removed == 0 && out.stored == 0);
    CHECK_OK(pushpark_register_ordered(e, aor, contact, NULL, 0, "reg@h", 8, &out));
    CHECK(out.removed == 1);
    CHECK_RESULT(pushpark_register_ordered(NULL, aor, contact, NULL, 0, "reg@h", 9, &out),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_register_ordered(e, aor, contact, NULL, 0, "\xC3\x28", 9, &out),
                 PUSHPARK_ERR_UTF8);
    CHECK(strstr(pushpark_last_error(), "call_id") != NULL);
    /* A Path (for a cluster's other nodes) is checked as the other strings. */
    CHECK_OK(pushpark_register_path(e, aor, contact, NULL, 600, "reg@h", 10,
                                    "<sip:192.0.2.1;lr>", &out));
    CHECK(out.stored == 1);
    CHECK_RESULT(pushpark_register_path(e, aor, contact, NULL, 0, "reg@h", 11, "\xC3\x28", &out),
                 PUSHPARK_ERR_UTF8);
    CHECK(strstr(pushpark_last_error(), "path") != NULL);
    CHECK_OK(pushpark_register_path(e, aor, contact, NULL, 0, "reg@h", 12, NULL, &out));
    CHECK(out.removed == 1);
    free(contact);
    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.registers_out_of_order == 1);
}

/* The next event that is not a PUSH_RESULT, which must be of `kind`. */
static pushpark_event *expect_next(pushpark_engine *e, pushpark_event_kind kind)
{
    for (;;) {
        pushpark_event *ev = next_event(e, WAIT_MS);
        CHECK(ev != NULL);
        if (pushpark_event_get_kind(ev) == kind)
            return ev;
        CHECK(pushpark_event_get_kind(ev) == PUSHPARK_EVENT_PUSH_RESULT);
        CHECK(strcmp(pushpark_event_get_reason(ev), "delivered") == 0);
        pushpark_event_free(ev);
    }
}

static void expect_device_and_contact(pushpark_event *ev, const char *device, const char *token)
{
    CHECK(strcmp(pushpark_event_get_device(ev), device) == 0);
    CHECK(strstr(pushpark_event_get_contact(ev), "pn-prid=") != NULL);
    CHECK(strstr(pushpark_event_get_contact(ev), token) == NULL);
    CHECK(strncmp(strstr(pushpark_event_get_contact(ev), "pn-prid=") + 8, token, 8) == 0);
}

static void fork_and_late_wake(pushpark_engine *e)
{
    register_device(e, AOR, "fiona", TOKEN_RING, "<urn:uuid:R>", 3600);
    register_device(e, AOR, "fiona", TOKEN_STORED, "<urn:uuid:S>", 3600);
    char *ring = push_contact("fiona", TOKEN_RING);
    char *held = push_contact("fiona", TOKEN_HELD);
    pushpark_contact contacts[] = {
        {ring, "\"<urn:uuid:r>\"", 1},
        {held, "<urn:uuid:H>", 0},
    };
    uint64_t id = 0;
    CHECK_OK(pushpark_fork(e, "call-fiona@test", AOR, "sip:zed@example.com", "Zed Caller", 50, 0,
                           0, contacts, 2, &id));
    CHECK(id != 0);
    /* The stored and the held-back device are pushed, the ringing one is not. */
    for (int i = 0; i < 2; i++) {
        pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_PUSH_RESULT, 0, 1);
        CHECK(pushpark_event_get_host_ref(ev) == 50); /* the call waits: its host_ref */
        pushpark_event_free(ev);
    }
    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.pushes_sent == 2 && st.parked_now == 0 && st.resumed_now == 1);

    /* The held-back device wakes: a branch, never a RESUME. */
    register_device(e, AOR, "fiona", TOKEN_HELD, "<urn:uuid:h>", 3600);
    pushpark_event *ev = expect_next(e, PUSHPARK_EVENT_APPEND_BRANCH);
    CHECK(pushpark_event_get_host_ref(ev) == 50 && pushpark_event_get_park_id(ev) == id);
    expect_device_and_contact(ev, "urn:uuid:h", TOKEN_HELD);
    CHECK(strcmp(pushpark_event_get_call_id(ev), "call-fiona@test") == 0);
    pushpark_event_free(ev);
    /* The ringing device registering adds nothing. */
    register_device(e, AOR, "fiona", TOKEN_RING, "<urn:uuid:r>", 3600);
    expect_nothing_for(e, 50);

    /* Answered on a branch; the stored device wakes later: INVITE + CANCEL for it. */
    CHECK_OK(pushpark_call_completed(e, 50, 200));
    CHECK_RESULT(pushpark_call_completed(e, 50, 200), PUSHPARK_ERR_NOT_FOUND);
    register_device(e, AOR, "fiona", TOKEN_STORED, "<urn:uuid:s>", 3600);
    ev = expect_next(e, PUSHPARK_EVENT_LATE_WAKE);
    CHECK(pushpark_event_get_host_ref(ev) == 0 && pushpark_event_get_park_id(ev) == id);
    CHECK(pushpark_event_get_sip_code(ev) == 200);
    CHECK(strcmp(pushpark_event_get_reason(ev), "Call completed elsewhere") == 0);
    CHECK(strcmp(pushpark_event_get_call_id(ev), "call-fiona@test") == 0);
    CHECK(strcmp(pushpark_event_get_caller_uri(ev), "sip:zed@example.com") == 0);
    CHECK(strcmp(pushpark_event_get_caller_name(ev), "Zed Caller") == 0);
    CHECK(strcmp(pushpark_event_get_aor(ev), AOR) == 0);
    CHECK(strcmp(pushpark_event_kind_name(PUSHPARK_EVENT_LATE_WAKE), "LATE_WAKE") == 0);
    expect_device_and_contact(ev, "urn:uuid:s", TOKEN_STORED);
    /* The host finds the woken device in its location table by its instance. */
    CHECK(matches(pushpark_event_get_device(ev), "\"<urn:UUID:S>\""));
    pushpark_event_free(ev);
    /* Once. */
    register_device(e, AOR, "fiona", TOKEN_STORED, "<urn:uuid:s>", 3600);
    ev = NULL;
    while (pushpark_poll(e, &ev) == PUSHPARK_OK) {
        CHECK(pushpark_event_get_kind(ev) == PUSHPARK_EVENT_PUSH_RESULT);
        pushpark_event_free(ev);
        ev = NULL;
    }
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.late_wakes == 1 && st.resumed_now == 0 && st.append_branches == 1);

    /* Listings never show a whole token either. */
    char *json = NULL;
    CHECK_OK(pushpark_devices_json_page(e, AOR, 0, 100, &json));
    CHECK(strstr(json, "urn:uuid:s") != NULL && strstr(json, TOKEN_STORED) == NULL);
    pushpark_string_free(json);
    free(ring);
    free(held);
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    rules_survive_fork(&h);
    fcm_provider();
    instance_matching();
    pushpark_engine *e = engine_new(&h, "fork", "\"recent_register_ms\": 0");
    bounded_errors_and_host_ref_0(e);
    register_order(e);
    fork_and_late_wake(e);
    pushpark_engine_free(e);
    puts("fork: all checks passed");
    return 0;
}

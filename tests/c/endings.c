/*
 * How parked calls end, through the C ABI against the mock APNs: timeout -> REJECT 480
 * no earlier than the timeout; cancel -> nothing after; limits and duplicates; and an
 * engine freed with calls still parked (ASan / valgrind runs check nothing leaks).
 */
#include "harness.h"

#define HEX64(x) x x x x x x x x
#define TOKEN_FRANK HEX64("f0f0f0f0")
#define TOKEN_GINA HEX64("9a9a9a9a")
#define TOKEN_HENRY HEX64("abababab")
#define TOKEN_IVAN HEX64("12121212")
#define TOKEN_JOE HEX64("34343434")

static void park(pushpark_engine *e, const char *aor, uint64_t host_ref, uint32_t timeout_ms)
{
    CHECK_OK(pushpark_park(e, "call@test", aor, "sip:zed@example.com", "", host_ref, 0,
                           timeout_ms, NULL));
}

static void timeout_rejects(pushpark_engine *e)
{
    const char *aor = "sip:frank@example.com";
    register_device(e, aor, "frank", TOKEN_FRANK, NULL, 3600);
    long long start = now_ms();
    park(e, aor, 1, 300);
    pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_REJECT, 1, 1);
    CHECK(now_ms() - start >= 300);
    CHECK(pushpark_event_get_sip_code(ev) == 480);
    CHECK(strcmp(pushpark_event_get_reason(ev), "Temporarily Unavailable") == 0);
    CHECK(strcmp(pushpark_event_get_aor(ev), aor) == 0);
    pushpark_event_free(ev);
    /* It ended: too late to cancel. */
    CHECK_RESULT(pushpark_cancel(e, 1), PUSHPARK_ERR_NOT_FOUND);
}

static void cancel_ends_quietly(pushpark_engine *e)
{
    const char *aor = "sip:gina@example.com";
    register_device(e, aor, "gina", TOKEN_GINA, NULL, 3600);

    /* A cancelled call never times out: the later call's REJECT comes, its own never. */
    park(e, aor, 10, 200);
    CHECK_OK(pushpark_cancel(e, 10));
    CHECK_RESULT(pushpark_cancel(e, 10), PUSHPARK_ERR_NOT_FOUND);
    park(e, aor, 11, 400);
    pushpark_event_free(expect_event(e, PUSHPARK_EVENT_REJECT, 11, 1));

    /* A cancelled call is not resumed by the device registering. */
    park(e, aor, 12, 0);
    CHECK_OK(pushpark_cancel(e, 12));
    CHECK(register_device(e, aor, "gina", TOKEN_GINA, NULL, 3600).resumed == 0);
    expect_nothing_for(e, 12);
}

static void limits(pushpark_engine *e)
{
    const char *henry = "sip:henry@example.com", *ivan = "sip:ivan@example.com";
    register_device(e, henry, "henry", TOKEN_HENRY, NULL, 3600);
    register_device(e, ivan, "ivan", TOKEN_IVAN, NULL, 3600);
    uint64_t id = 77;

    park(e, henry, 20, 0);
    CHECK_RESULT(pushpark_park(e, "c@test", henry, "sip:zed@example.com", NULL, 20, 0, 0, &id),
                 PUSHPARK_ERR_DUPLICATE);
    park(e, henry, 21, 0);
    CHECK_RESULT(pushpark_park(e, "c@test", henry, "sip:zed@example.com", NULL, 22, 0, 0, &id),
                 PUSHPARK_ERR_LIMIT_AOR);
    park(e, ivan, 23, 0);
    CHECK_RESULT(pushpark_park(e, "c@test", ivan, "sip:zed@example.com", NULL, 24, 0, 0, &id),
                 PUSHPARK_ERR_LIMIT_TOTAL);
    CHECK(id == 77);

    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.parked_now == 3);
    CHECK(st.park_refused_limit == 2);

    char *json = NULL;
    CHECK_OK(pushpark_parked_json_page(e, 0, 100, &json));
    CHECK(strstr(json, "\"total\":3,") && strstr(json, "\"host_ref\":20") &&
          strstr(json, "\"host_ref\":21") && strstr(json, "\"host_ref\":23"));
    pushpark_string_free(json);
    /* A page: the second call by park id, of three. */
    CHECK_OK(pushpark_parked_json_page(e, 1, 1, &json));
    CHECK(strstr(json, "{\"total\":3,\"offset\":1,\"items\":[{") == json &&
          strstr(json, "\"host_ref\":21") && !strstr(json, "\"host_ref\":20") &&
          !strstr(json, "\"host_ref\":23"));
    pushpark_string_free(json);

    /* Room again once calls end. */
    CHECK_OK(pushpark_cancel(e, 21));
    CHECK_OK(pushpark_cancel(e, 23));
    park(e, henry, 22, 0);
    CHECK_OK(pushpark_cancel(e, 20));
    CHECK_OK(pushpark_cancel(e, 22));
}

/* Calls still parked when the engine is freed end there, silently and without leaks. */
static void free_with_parked_calls(const struct harness *h)
{
    pushpark_engine *e = engine_new(h, "free", "\"timeout_ms\": 60000, \"recent_register_ms\": 0");
    const char *aor = "sip:joe@example.com";
    register_device(e, aor, "joe", TOKEN_JOE, NULL, 3600);
    for (uint64_t ref = 1; ref <= 5; ref++)
        park(e, aor, ref, 0);
    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    CHECK(st.parked_now == 5 && st.resumed_now == 0);
    pushpark_engine_free(e);
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    pushpark_engine *e = engine_new(&h, "endings", "\"recent_register_ms\": 0");
    timeout_rejects(e);
    cancel_ends_quietly(e);
    pushpark_engine_free(e);

    e = engine_new(&h, "limits",
                   "\"recent_register_ms\": 0, \"max_total\": 3, \"max_per_aor\": 2");
    limits(e);
    pushpark_engine_free(e);

    free_with_parked_calls(&h);
    puts("endings: all checks passed");
    return 0;
}

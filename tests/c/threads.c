/*
 * Many host threads using one engine at once: each registers its own user's device,
 * parks calls, cancels half of them, reads the statistics, and registers again; the main
 * thread then collects the RESUMEs through the event fd. Every kept call must be resumed
 * exactly once and no cancelled call ever.
 * Then the cancel race: host threads park, REGISTER (which queues the RESUME) and cancel
 * at once while another thread polls; no RESUME may be polled after its cancel returned.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 16
#define CALLS 8 /* the default per-AOR limit */

static pushpark_engine *engine;

static void user_of(int t, char *aor, size_t aor_len, char *user, size_t user_len)
{
    snprintf(user, user_len, "user%d", t);
    snprintf(aor, aor_len, "sip:user%d@example.com", t);
}

static void *host_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    char aor[64], user[16], token[65], call_id[64];
    user_of(t, aor, sizeof aor, user, sizeof user);
    for (int i = 0; i < 8; i++)
        snprintf(token + 8 * i, 9, "%08x", 0x7e570000u + (unsigned)t);
    register_device(engine, aor, user, token, NULL, 3600);

    for (uint64_t i = 0; i < CALLS; i++) {
        uint64_t ref = ((uint64_t)(t + 1) << 32) | i; /* never 0: "no call" */
        snprintf(call_id, sizeof call_id, "call-%d-%d@test", t, (int)i);
        CHECK_OK(pushpark_park(engine, call_id, aor, "sip:zed@example.com", "Zed", ref, 0, 0,
                               NULL));
        if (i % 2 == 0)
            CHECK_OK(pushpark_cancel(engine, ref));
    }
    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(engine, &st));
    char *json = NULL;
    CHECK_OK(pushpark_parked_json_page(engine, 0, PUSHPARK_PAGE_MAX, &json));
    pushpark_string_free(json);

    CHECK(register_device(engine, aor, user, token, NULL, 3600).resumed == CALLS / 2);
    return NULL;
}

#define RACE_CALLS 300

/* Ticks once per cancel that returned OK; done[t][i] is the tick of call i of thread t. */
static atomic_ullong ticks;
static atomic_ullong done[THREADS][RACE_CALLS];
static atomic_int racing, late_resumes;

static void *cancel_thread(void *arg)
{
    int t = (int)(intptr_t)arg;
    char aor[64], user[16], token[65];
    user_of(t, aor, sizeof aor, user, sizeof user);
    for (int i = 0; i < 8; i++)
        snprintf(token + 8 * i, 9, "%08x", 0x7e580000u + (unsigned)t);
    register_device(engine, aor, user, token, NULL, 3600);
    for (uint64_t i = 0; i < RACE_CALLS; i++) {
        uint64_t ref = ((uint64_t)(t + 1) << 32) | i;
        CHECK_OK(pushpark_park(engine, "race@test", aor, "sip:zed@example.com", NULL, ref, 0, 0,
                               NULL));
        CHECK(register_device(engine, aor, user, token, NULL, 3600).resumed == 1);
        CHECK_OK(pushpark_cancel(engine, ref));
        atomic_store(&done[t][i], atomic_fetch_add(&ticks, 1) + 1);
    }
    atomic_fetch_sub(&racing, 1);
    return NULL;
}

/* A RESUME of a call whose cancel returned before this poll began is a broken promise. */
static int check_polled(pushpark_event *ev, unsigned long long before)
{
    int resume = pushpark_event_get_kind(ev) == PUSHPARK_EVENT_RESUME;
    uint64_t ref = pushpark_event_get_host_ref(ev);
    pushpark_event_free(ev);
    if (!resume)
        return 0;
    uint64_t t = (ref >> 32) - 1, i = ref & 0xffffffffu;
    CHECK(t < THREADS && i < RACE_CALLS);
    unsigned long long at = atomic_load(&done[t][i]);
    return at != 0 && at <= before;
}

static void cancel_races_resume(void)
{
    pthread_t threads[THREADS];
    atomic_store(&racing, THREADS);
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&threads[t], NULL, cancel_thread, (void *)(intptr_t)t) == 0);
    while (atomic_load(&racing) > 0) {
        unsigned long long before = atomic_load(&ticks);
        pushpark_event *ev = NULL;
        if (pushpark_poll(engine, &ev) == PUSHPARK_OK)
            atomic_fetch_add(&late_resumes, check_polled(ev, before));
    }
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_join(threads[t], NULL) == 0);
    /* Every call was cancelled: no RESUME may be left either. */
    pushpark_event *ev = NULL;
    while (pushpark_poll(engine, &ev) == PUSHPARK_OK) {
        atomic_fetch_add(&late_resumes, check_polled(ev, atomic_load(&ticks)));
        ev = NULL;
    }
    if (atomic_load(&late_resumes) != 0)
        fprintf(stderr, "%d RESUMEs polled after their cancel returned\n",
                atomic_load(&late_resumes));
    CHECK(atomic_load(&late_resumes) == 0);
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    engine = engine_new(&h, "threads", "\"recent_register_ms\": 0");
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_create(&threads[t], NULL, host_thread, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++)
        CHECK(pthread_join(threads[t], NULL) == 0);

    static int resumed[THREADS][CALLS];
    for (int n = 0; n < THREADS * CALLS / 2; n++) {
        pushpark_event *ev = expect_event(engine, PUSHPARK_EVENT_RESUME, 0, 1);
        uint64_t ref = pushpark_event_get_host_ref(ev);
        uint64_t t = (ref >> 32) - 1, i = ref & 0xffffffffu;
        CHECK(t < THREADS && i < CALLS && i % 2 == 1);
        resumed[t][i]++;
        CHECK(resumed[t][i] == 1);
        pushpark_event_free(ev);
    }
    /* Every RESUME was queued before its REGISTER returned: nothing else may follow but
     * push outcomes, and a LATE_WAKE (cause 487) for a cancelled call whose push went out
     * before its cancel. */
    pushpark_event *ev = NULL;
    while (pushpark_poll(engine, &ev) == PUSHPARK_OK) {
        pushpark_event_kind kind = pushpark_event_get_kind(ev);
        CHECK(kind == PUSHPARK_EVENT_PUSH_RESULT
              || (kind == PUSHPARK_EVENT_LATE_WAKE && pushpark_event_get_sip_code(ev) == 487));
        pushpark_event_free(ev);
        ev = NULL;
    }

    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(engine, &st));
    CHECK(st.parked_total == THREADS * CALLS);
    CHECK(st.resumed == THREADS * CALLS / 2);
    CHECK(st.cancelled == THREADS * CALLS / 2);
    pushpark_engine_free(engine);

    engine = engine_new(&h, "cancel-race", "\"recent_register_ms\": 0");
    cancel_races_resume();
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(engine, &st));
    CHECK(st.resumed == THREADS * RACE_CALLS && st.parked_now == 0 && st.resumed_now == 0);
    pushpark_engine_free(engine);
    puts("threads: all checks passed");
    return 0;
}

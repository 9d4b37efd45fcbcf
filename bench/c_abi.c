/*
 * Engine figures through the C ABI, as a host sees them (run by bench/c_abi.sh):
 * - cost of one park + REGISTER + RESUME poll + call_ended cycle on one host thread,
 *   excluding the network (one device, pushes coalesced: no push per cycle);
 * - REGISTER -> RESUME latency as seen by a host event loop blocked in poll(2) on the
 *   event fd in another thread (p50/p99);
 * - memory per parked call (RSS growth with CALLS calls parked at once) and the time
 *   pushpark_engine_free takes to end them.
 * Usage: c_abi ENDPOINT CA_FILE KEY_FILE WORK_DIR
 */
#define _GNU_SOURCE

#include "pushpark.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CYCLES 100000
#define LATENCY_SAMPLES 20000
#define CALLS 100000

#define AOR "sip:bench@example.com"
#define CONTACT                                                                            \
    "<sip:bench@192.0.2.10:5061;transport=tls;pn-provider=apns;pn-prid="                   \
    "be9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9cbe9c;"                  \
    "pn-param=TESTTEAM01.com.example.bench.voip>"

#define MUST(call)                                                                         \
    do {                                                                                   \
        pushpark_result r_ = (call);                                                       \
        if (r_ != PUSHPARK_OK) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,             \
                    pushpark_result_name(r_), pushpark_last_error());                      \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static long long clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL || fscanf(f, "%ld %ld", &pages, &resident) != 2) {
        perror("/proc/self/statm");
        exit(1);
    }
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static pushpark_engine *engine_new(char **argv, const char *store)
{
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"apns\": {\"endpoint\": \"%s\", \"ca_file\": \"%s\", \"auth\": {\"key_file\": "
             "\"%s\", \"key_id\": \"TESTKEY001\", \"team_id\": \"TESTTEAM01\"}},"
             " \"park\": {\"recent_register_ms\": 0, \"max_total\": 200000,"
             " \"max_per_aor\": 10000, \"timeout_ms\": 600000},"
             " \"push\": {\"min_interval_ms\": 3600000}, \"store\": {\"dir\": \"%s/%s\"}}",
             argv[1], argv[2], argv[3], argv[4], store);
    pushpark_engine *e = NULL;
    MUST(pushpark_engine_new(cfg, &e));
    MUST(pushpark_register(e, AOR, CONTACT, NULL, 3600, NULL));
    return e;
}

/* Takes events until a RESUME for host_ref (PUSH_RESULTs may come in between). */
static void take_resume(pushpark_engine *e, uint64_t host_ref)
{
    for (;;) {
        pushpark_event *ev = NULL;
        pushpark_result r = pushpark_poll(e, &ev);
        if (r == PUSHPARK_ERR_EMPTY) {
            fprintf(stderr, "no RESUME queued for %llu\n", (unsigned long long)host_ref);
            exit(1);
        }
        MUST(r);
        int done = pushpark_event_get_kind(ev) == PUSHPARK_EVENT_RESUME &&
                   pushpark_event_get_host_ref(ev) == host_ref;
        pushpark_event_free(ev);
        if (done)
            return;
    }
}

static void cycle(pushpark_engine *e, uint64_t host_ref)
{
    MUST(pushpark_park(e, "bench-call-0123456789@192.0.2.1", AOR, "sip:+15550100@example.com",
                       "Bench Caller", host_ref, 0, 0, NULL));
    MUST(pushpark_register(e, AOR, CONTACT, NULL, 3600, NULL));
    take_resume(e, host_ref);
    MUST(pushpark_call_ended(e, host_ref));
}

static void cycle_cost(char **argv)
{
    pushpark_engine *e = engine_new(argv, "cycle");
    for (uint64_t i = 1; i <= 1000; i++)
        cycle(e, i);
    long long start = now_ns();
    long long cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    long long host_cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (uint64_t i = 1; i <= CYCLES; i++)
        cycle(e, 1000 + i);
    /* Wall time suffers from a busy machine; CPU time is the cost. */
    printf("cycle_ns wall=%.0f cpu_all_threads=%.0f cpu_host_thread=%.0f"
           " (park + REGISTER + RESUME poll + call_ended, %d cycles)\n",
           (double)(now_ns() - start) / CYCLES,
           (double)(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu) / CYCLES,
           (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - host_cpu) / CYCLES, CYCLES);
    pushpark_engine_free(e);
}

/* The host's event loop: waits on the event fd, reports each RESUME's latency. */
static pushpark_engine *loop_engine;
static _Atomic long long register_started;
static long long latencies[LATENCY_SAMPLES];
static int ack[2];

static void *event_loop(void *arg)
{
    int fd = -1;
    (void)arg;
    MUST(pushpark_event_fd(loop_engine, &fd));
    for (int n = 0; n < LATENCY_SAMPLES;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            perror("poll");
            exit(1);
        }
        pushpark_event *ev = NULL;
        while (pushpark_poll(loop_engine, &ev) == PUSHPARK_OK) {
            if (pushpark_event_get_kind(ev) == PUSHPARK_EVENT_RESUME) {
                latencies[n++] = now_ns() - atomic_load(&register_started);
                if (write(ack[1], "x", 1) != 1) {
                    perror("write");
                    exit(1);
                }
            }
            pushpark_event_free(ev);
            ev = NULL;
        }
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void resume_latency(char **argv)
{
    loop_engine = engine_new(argv, "latency");
    pthread_t loop;
    if (pipe(ack) != 0 || pthread_create(&loop, NULL, event_loop, NULL) != 0) {
        perror("pipe/pthread_create");
        exit(1);
    }
    for (uint64_t i = 1; i <= LATENCY_SAMPLES; i++) {
        char c;
        MUST(pushpark_park(loop_engine, "bench-call-0123456789@192.0.2.1", AOR,
                           "sip:+15550100@example.com", "Bench Caller", i, 0, 0, NULL));
        atomic_store(&register_started, now_ns());
        MUST(pushpark_register(loop_engine, AOR, CONTACT, NULL, 3600, NULL));
        if (read(ack[0], &c, 1) != 1) {
            perror("read");
            exit(1);
        }
        MUST(pushpark_call_ended(loop_engine, i));
    }
    pthread_join(loop, NULL);
    qsort(latencies, LATENCY_SAMPLES, sizeof latencies[0], by_value);
    printf("register_to_resume_us p50=%.1f p99=%.1f (event loop in poll(2), %d samples)\n",
           latencies[LATENCY_SAMPLES / 2] / 1000.0, latencies[LATENCY_SAMPLES * 99 / 100] / 1000.0,
           LATENCY_SAMPLES);
    pushpark_engine_free(loop_engine);
}

/* CALLS calls spread over AORS users (the per-AOR limit is at most 10000). */
#define AORS 10

static void memory_per_call(char **argv)
{
    pushpark_engine *e = engine_new(argv, "memory");
    char aors[AORS][32];
    for (int a = 0; a < AORS; a++) {
        char contact[256];
        snprintf(aors[a], sizeof aors[a], "sip:bench%d@example.com", a);
        snprintf(contact, sizeof contact,
                 "<sip:bench%d@192.0.2.10:5061;transport=tls;pn-provider=apns;pn-prid=%064x;"
                 "pn-param=TESTTEAM01.com.example.bench.voip>",
                 a, 0xbe9c00 + a);
        MUST(pushpark_register(e, aors[a], contact, NULL, 3600, NULL));
    }
    long before = rss_kib();
    long queue_full = 0;
    for (uint64_t i = 1; i <= CALLS; i++) {
        char call_id[64];
        snprintf(call_id, sizeof call_id, "bench-%08llu-0123456789@192.0.2.1",
                 (unsigned long long)i);
        pushpark_result r;
        while ((r = pushpark_park(e, call_id, aors[i % AORS], "sip:+15550100@example.com",
                                  "Bench Caller", i, 0, 0, NULL)) == PUSHPARK_ERR_QUEUE_FULL) {
            queue_full++;
            sched_yield();
        }
        MUST(r);
    }
    /* Let the engine thread take its queue (timers, coalescing) before measuring. */
    sleep(2);
    pushpark_stats st;
    st.size = sizeof st;
    MUST(pushpark_stats_get(e, &st));
    long after = rss_kib();
    printf("memory_per_parked_call_bytes=%.0f (RSS +%ld KiB for %llu parked calls; park "
           "retried %ld times on QUEUE_FULL)\n",
           (after - before) * 1024.0 / CALLS, after - before,
           (unsigned long long)st.parked_now, queue_full);
    long long start = now_ns();
    pushpark_engine_free(e);
    printf("engine_free_ms=%.1f (with %d calls parked)\n", (now_ns() - start) / 1e6, CALLS);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s ENDPOINT CA_FILE KEY_FILE WORK_DIR\n", argv[0]);
        return 2;
    }
    cycle_cost(argv);
    resume_latency(argv);
    memory_per_call(argv);
    return 0;
}

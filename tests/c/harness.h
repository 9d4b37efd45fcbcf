/*
 * Shared helpers of the C harness programs (the .c files in tests/c), run by tests/c_harness.rs.
 * Each program is invoked as: PROGRAM ENDPOINT CA_FILE KEY_FILE WORK_DIR
 * (the mock APNs's HOST:PORT, its CA certificate, its ES256 key, a private scratch dir)
 * and exits 0 when every check passed; on the first failed check it prints the check,
 * the result code and pushpark_last_error(), and exits 1. A program that needs the runner
 * to act on the mock at a given point calls sync_with_runner (see there).
 */
#ifndef PUSHPARK_HARNESS_H
#define PUSHPARK_HARNESS_H

#define _POSIX_C_SOURCE 200809L

#include "pushpark.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Generous: tests wait on conditions, never on time; this only bounds a hang. */
#define WAIT_MS 30000

#define TOPIC "com.example.app.voip"
#define PN_PARAM "TESTTEAM01." TOPIC

static inline void fail(const char *file, int line, const char *what, pushpark_result r)
{
    fprintf(stderr, "%s:%d: check failed: %s (result %s, last error \"%s\")\n", file, line,
            what, pushpark_result_name(r), pushpark_last_error());
    exit(1);
}

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond))                                                                   \
            fail(__FILE__, __LINE__, #cond, PUSHPARK_OK);                              \
    } while (0)

/* Checks that `call` returns `expected`. */
#define CHECK_RESULT(call, expected)                                                   \
    do {                                                                               \
        pushpark_result r_ = (call);                                                   \
        if (r_ != (expected))                                                          \
            fail(__FILE__, __LINE__, #call " == " #expected, r_);                      \
    } while (0)

#define CHECK_OK(call) CHECK_RESULT(call, PUSHPARK_OK)

struct harness {
    const char *endpoint, *ca_file, *key_file, *work_dir;
};

static inline struct harness harness_args(int argc, char **argv)
{
    struct harness h;
    if (argc != 5) {
        fprintf(stderr, "usage: %s ENDPOINT CA_FILE KEY_FILE WORK_DIR\n", argv[0]);
        exit(2);
    }
    h.endpoint = argv[1];
    h.ca_file = argv[2];
    h.key_file = argv[3];
    h.work_dir = argv[4];
    return h;
}

/*
 * A configuration for the mock, with its own store directory WORK_DIR/store_name and
 * `park` holding the body of the "park" object (e.g. "\"timeout_ms\": 30000").
 * Returns a malloc'd string.
 */
static inline char *config_json_at_level(const struct harness *h, const char *store_name,
                                         const char *park, const char *log_level)
{
    const char *fmt =
        "{\"apns\": {\"endpoint\": \"%s\", \"ca_file\": \"%s\","
        " \"auth\": {\"key_file\": \"%s\", \"key_id\": \"TESTKEY001\", \"team_id\": \"TESTTEAM01\"}},"
        " \"park\": {%s}, \"store\": {\"dir\": \"%s/%s\"}, \"log_level\": \"%s\"}";
    int n = snprintf(NULL, 0, fmt, h->endpoint, h->ca_file, h->key_file, park, h->work_dir,
                     store_name, log_level);
    char *s = malloc((size_t)n + 1);
    CHECK(s != NULL);
    snprintf(s, (size_t)n + 1, fmt, h->endpoint, h->ca_file, h->key_file, park, h->work_dir,
             store_name, log_level);
    return s;
}

/* The harness logs everything, so the secrecy checks see every line. */
static inline char *config_json(const struct harness *h, const char *store_name, const char *park)
{
    return config_json_at_level(h, store_name, park, "trace");
}

static inline pushpark_engine *engine_new(const struct harness *h, const char *store_name,
                                   const char *park)
{
    char *cfg = config_json(h, store_name, park);
    pushpark_engine *e = NULL;
    CHECK_OK(pushpark_engine_new(cfg, &e));
    CHECK(e != NULL);
    free(cfg);
    return e;
}

/* A RFC 8599 Contact for a device with `token`. Returns a malloc'd string. */
static inline char *push_contact(const char *user, const char *token)
{
    const char *fmt = "<sip:%s@127.0.0.1:5999;transport=tcp;pn-provider=apns;pn-prid=%s;"
                      "pn-param=" PN_PARAM ">";
    int n = snprintf(NULL, 0, fmt, user, token);
    char *s = malloc((size_t)n + 1);
    CHECK(s != NULL);
    snprintf(s, (size_t)n + 1, fmt, user, token);
    return s;
}

/* REGISTERs a push device of `aor` (user part `user`) with `token`; returns the outcome. */
static inline pushpark_register_outcome register_device(pushpark_engine *e, const char *aor,
                                                 const char *user, const char *token,
                                                 const char *instance, uint32_t expires)
{
    char *contact = push_contact(user, token);
    pushpark_register_outcome out;
    memset(&out, 0xAB, sizeof out);
    CHECK_OK(pushpark_register(e, aor, contact, instance, expires, &out));
    free(contact);
    return out;
}

/*
 * Prints "sync TAG" and waits for the runner's answer line on stdin: the runner does what
 * TAG asks of the mock (e.g. script a token) before answering.
 */
static inline void sync_with_runner(const char *tag)
{
    char line[64];
    printf("sync %s\n", tag);
    fflush(stdout);
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    CHECK(strcmp(line, "go\n") == 0);
}

static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The next event, waiting for the event fd to become readable (poll(2)) when the queue
 * is empty, as a host's event loop does. NULL if none came within timeout_ms.
 */
static inline pushpark_event *next_event(pushpark_engine *e, int timeout_ms)
{
    int fd = -1;
    long long deadline = now_ms() + timeout_ms;
    CHECK_OK(pushpark_event_fd(e, &fd));
    CHECK(fd >= 0);
    for (;;) {
        pushpark_event *ev = NULL;
        pushpark_result r = pushpark_poll(e, &ev);
        if (r == PUSHPARK_OK) {
            CHECK(ev != NULL);
            return ev;
        }
        CHECK_RESULT(r, PUSHPARK_ERR_EMPTY);
        CHECK(ev == NULL);
        long long left = deadline - now_ms();
        if (left <= 0)
            return NULL;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)left);
        CHECK(n >= 0);
    }
}

/*
 * Waits for the next event of `kind` (any host_ref when host_ref == 0), failing the test
 * if none comes within WAIT_MS. Events of other kinds are skipped, except that a
 * RESUME, APPEND_BRANCH or REJECT for a call other than the awaited one fails the test
 * when `strict` is set (it would be an unexpected ending).
 */
static inline pushpark_event *expect_event(pushpark_engine *e, pushpark_event_kind kind,
                                    uint64_t host_ref, int strict)
{
    for (;;) {
        pushpark_event *ev = next_event(e, WAIT_MS);
        if (ev == NULL) {
            fprintf(stderr, "no %s event for host_ref %llu within %d ms\n",
                    pushpark_event_kind_name(kind), (unsigned long long)host_ref, WAIT_MS);
            exit(1);
        }
        pushpark_event_kind k = pushpark_event_get_kind(ev);
        uint64_t ref = pushpark_event_get_host_ref(ev);
        if (k == kind && (host_ref == 0 || ref == host_ref))
            return ev;
        if (strict && (k == PUSHPARK_EVENT_RESUME || k == PUSHPARK_EVENT_APPEND_BRANCH ||
                       k == PUSHPARK_EVENT_REJECT)) {
            fprintf(stderr, "unexpected %s for host_ref %llu while waiting for %s %llu\n",
                    pushpark_event_kind_name(k), (unsigned long long)ref,
                    pushpark_event_kind_name(kind), (unsigned long long)host_ref);
            exit(1);
        }
        pushpark_event_free(ev);
    }
}

/*
 * Takes every event already queued (without waiting) and fails the test if one ends or
 * resumes the call `host_ref`. Used right after a call that would have queued such an
 * event synchronously (a REGISTER queues its RESUMEs before it returns).
 */
static inline void expect_nothing_for(pushpark_engine *e, uint64_t host_ref)
{
    pushpark_event *ev = NULL;
    while (pushpark_poll(e, &ev) == PUSHPARK_OK) {
        pushpark_event_kind k = pushpark_event_get_kind(ev);
        if (pushpark_event_get_host_ref(ev) == host_ref && k != PUSHPARK_EVENT_PUSH_RESULT &&
            k != PUSHPARK_EVENT_DEVICE_GONE) {
            fprintf(stderr, "unexpected %s for host_ref %llu\n", pushpark_event_kind_name(k),
                    (unsigned long long)host_ref);
            exit(1);
        }
        pushpark_event_free(ev);
        ev = NULL;
    }
}

#endif

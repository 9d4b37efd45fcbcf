/*
 * pushpark_engine_spawn: the engine in a supervised child process. A clean free commits
 * the store; kill -9 of the engine process ends each call it held with one REJECT and a
 * new engine process serves the next call (devices still known); a stopped (hung) engine
 * process is killed and replaced the same way, whether or not a call waits on it; a
 * branch fetched from the engine process but not yet polled when the host ends its call
 * becomes its device's LATE_WAKE; a start-up error is the child's.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN_ALICE "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ALICE "sip:alice@example.com"
#define TOKEN_BOB_1 "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1"
#define TOKEN_BOB_2 "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
#define BOB "sip:bob@example.com"

static pushpark_engine *spawn(const struct harness *h)
{
    char *cfg = config_json(h, "store", "\"timeout_ms\": 60000, \"recent_register_ms\": 0");
    pushpark_engine *e = NULL;
    CHECK_OK(pushpark_engine_spawn(cfg, &e));
    CHECK(e != NULL);
    free(cfg);
    return e;
}

/* The one child process of this (single-threaded) program: the engine process. */
static pid_t engine_pid(void)
{
    pid_t found = 0;
    DIR *proc = opendir("/proc");
    struct dirent *d;
    CHECK(proc != NULL);
    while ((d = readdir(proc)) != NULL) {
        char path[300], state;
        int pid, ppid;
        FILE *f;
        snprintf(path, sizeof path, "/proc/%s/stat", d->d_name);
        if (d->d_name[0] < '1' || d->d_name[0] > '9' || (f = fopen(path, "r")) == NULL)
            continue;
        /* pid (comm) state ppid: comm is "pushpark-engine", without spaces */
        if (fscanf(f, "%d %*s %c %d", &pid, &state, &ppid) == 3 && ppid == getpid() &&
            state != 'Z') {
            CHECK(found == 0);
            found = pid;
        }
        fclose(f);
    }
    closedir(proc);
    CHECK(found != 0);
    return found;
}

static void park(pushpark_engine *e, const char *call_id, uint64_t host_ref)
{
    uint64_t id = 0;
    CHECK_OK(pushpark_park(e, call_id, ALICE, "sip:zed@example.com", "Zed", host_ref, 0, 0, &id));
    CHECK(id != 0);
}

/* Both calls end with one REJECT each (reject_code 480), whatever the order. */
static void expect_rejects(pushpark_engine *e, uint64_t a, uint64_t b)
{
    int seen_a = 0, seen_b = 0;
    while (!(seen_a && seen_b)) {
        pushpark_event *ev = next_event(e, WAIT_MS);
        CHECK(ev != NULL);
        pushpark_event_kind k = pushpark_event_get_kind(ev);
        uint64_t ref = pushpark_event_get_host_ref(ev);
        if (k == PUSHPARK_EVENT_REJECT) {
            CHECK(ref == a || ref == b);
            CHECK(pushpark_event_get_sip_code(ev) == 480);
            CHECK(strcmp(pushpark_event_get_aor(ev), ALICE) == 0);
            CHECK(ref == a ? !seen_a++ : !seen_b++);
        } else {
            CHECK(k == PUSHPARK_EVENT_PUSH_RESULT);
        }
        pushpark_event_free(ev);
    }
    expect_nothing_for(e, a);
    expect_nothing_for(e, b);
}

static uint64_t restarts(pushpark_engine *e)
{
    pushpark_stats st;
    st.size = sizeof st;
    CHECK_OK(pushpark_stats_get(e, &st));
    return st.engine_restarts;
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);

    /* A clean free commits the binding: the next engine process knows alice. */
    pushpark_engine *e = spawn(&h);
    pid_t first = engine_pid();
    register_device(e, ALICE, "alice", TOKEN_ALICE, NULL, 3600);
    pushpark_engine_free(e);
    CHECK(waitpid(first, NULL, WNOHANG) < 0 && errno == ECHILD); /* reaped by free */

    e = spawn(&h);
    park(e, "call-1@test", 1);
    park(e, "call-2@test", 2);
    CHECK(restarts(e) == 0);

    /* kill -9: each held call ends once; a new engine process parks and resumes. */
    pid_t killed = engine_pid();
    CHECK(kill(killed, SIGKILL) == 0);
    expect_rejects(e, 1, 2);
    CHECK(engine_pid() != killed);
    CHECK(restarts(e) == 1);
    CHECK_RESULT(pushpark_cancel(e, 1), PUSHPARK_ERR_NOT_FOUND);
    park(e, "call-3@test", 3);
    register_device(e, ALICE, "alice", TOKEN_ALICE, NULL, 3600);
    pushpark_event *ev = expect_event(e, PUSHPARK_EVENT_RESUME, 3, 1);
    pushpark_event_free(ev);

    /* A stopped engine process is a hung one: found out by the supervisor's tick with no
     * call made, killed, its calls rejected. */
    park(e, "call-4@test", 4);
    park(e, "call-5@test", 5);
    pid_t stopped = engine_pid();
    CHECK(kill(stopped, SIGSTOP) == 0);
    expect_rejects(e, 4, 5);
    CHECK(engine_pid() != stopped);
    CHECK(restarts(e) == 2);

    /* A call the engine process hangs in returns ENGINE_DOWN: it did not park. */
    stopped = engine_pid();
    CHECK(kill(stopped, SIGSTOP) == 0);
    uint64_t id = 0;
    CHECK_RESULT(pushpark_park(e, "call-6@test", ALICE, "sip:zed@example.com", NULL, 6, 0, 0, &id),
                 PUSHPARK_ERR_ENGINE_DOWN);
    expect_nothing_for(e, 6);
    CHECK(engine_pid() != stopped);
    park(e, "call-7@test", 7);
    CHECK_OK(pushpark_cancel(e, 7));
    expect_nothing_for(e, 7);

    /* Both of bob's devices register before the host polls: the first poll fetches the
     * RESUME and the second device's APPEND_BRANCH from the engine process. The call is
     * answered before that branch is added: the device is told, as a late wake. */
    register_device(e, BOB, "bob", TOKEN_BOB_1, "<urn:uuid:b1>", 3600);
    register_device(e, BOB, "bob", TOKEN_BOB_2, "<urn:uuid:b2>", 3600);
    CHECK_OK(pushpark_park(e, "call-8@test", BOB, "sip:zed@example.com", "Zed", 8, 0, 0, &id));
    register_device(e, BOB, "bob", TOKEN_BOB_1, "<urn:uuid:b1>", 3600);
    register_device(e, BOB, "bob", TOKEN_BOB_2, "<urn:uuid:b2>", 3600);
    ev = expect_event(e, PUSHPARK_EVENT_RESUME, 8, 1);
    CHECK(strcmp(pushpark_event_get_device(ev), "urn:uuid:b1") == 0);
    pushpark_event_free(ev);
    CHECK_OK(pushpark_call_completed(e, 8, 200));
    ev = expect_event(e, PUSHPARK_EVENT_LATE_WAKE, 0, 1);
    CHECK(pushpark_event_get_host_ref(ev) == 0 && pushpark_event_get_park_id(ev) == id);
    CHECK(strcmp(pushpark_event_get_device(ev), "urn:uuid:b2") == 0);
    CHECK(pushpark_event_get_sip_code(ev) == 200);
    CHECK(strcmp(pushpark_event_get_reason(ev), "Call completed elsewhere") == 0);
    pushpark_event_free(ev);
    expect_nothing_for(e, 8);
    pushpark_engine_free(e);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);

    /* The engine process's start-up error is spawn's: a store dir below a file. */
    char *cfg = config_json(&h, "store/devices.redb/below", "");
    e = NULL;
    CHECK_RESULT(pushpark_engine_spawn(cfg, &e), PUSHPARK_ERR_IO);
    CHECK(e == NULL);
    CHECK(strlen(pushpark_last_error()) > 0);
    free(cfg);
    CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD);
    puts("spawn: all checks passed");
    return 0;
}

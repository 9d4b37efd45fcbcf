/*
 * NULL and garbage inputs to every function give error codes (never a crash), out-params
 * stay untouched on failure, and the static information functions answer. Also the log
 * callback: it receives the engine's messages, and none of them carries a secret.
 */
#include "harness.h"

#include <stdatomic.h>
#include <stddef.h>

static const char BAD_UTF8[] = {'s', 'i', 'p', ':', (char)0xC3, (char)0x28, 0};
/* A device keyed by its token: logs and events show it cut short, never whole. */
#define TOKEN_KEYED "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
static pushpark_engine *const NOT_AN_ENGINE = (pushpark_engine *)16;

static void static_information(void)
{
    CHECK(strcmp(pushpark_version(), PUSHPARK_VERSION_STRING) == 0);
    CHECK(strcmp(pushpark_result_name(PUSHPARK_OK), "PUSHPARK_OK") == 0);
    CHECK(strcmp(pushpark_result_name(PUSHPARK_ERR_NO_DEVICE), "PUSHPARK_ERR_NO_DEVICE") == 0);
    CHECK(strcmp(pushpark_result_name(PUSHPARK_ERR_INTERNAL), "PUSHPARK_ERR_INTERNAL") == 0);
    CHECK(strcmp(pushpark_result_name((pushpark_result)999), "PUSHPARK_UNKNOWN") == 0);
    CHECK(strcmp(pushpark_result_name(PUSHPARK_ERR_UNSUPPORTED), "PUSHPARK_ERR_UNSUPPORTED") == 0);
    for (int code = 0; code <= PUSHPARK_ERR_ENGINE_DOWN; code++) {
        CHECK(strncmp(pushpark_result_name((pushpark_result)code), "PUSHPARK_", 9) == 0);
        CHECK(strlen(pushpark_result_message((pushpark_result)code)) > 0);
    }
    CHECK(strlen(pushpark_result_message((pushpark_result)-1)) > 0);
    CHECK(strcmp(pushpark_event_kind_name(PUSHPARK_EVENT_RESUME), "RESUME") == 0);
    CHECK(strcmp(pushpark_event_kind_name(PUSHPARK_EVENT_DEVICE_GONE), "DEVICE_GONE") == 0);
    CHECK(strcmp(pushpark_event_kind_name(PUSHPARK_EVENT_LATE_WAKE), "LATE_WAKE") == 0);
    CHECK(strcmp(pushpark_event_kind_name((pushpark_event_kind)0), "UNKNOWN") == 0);
    CHECK(strcmp(pushpark_event_kind_name((pushpark_event_kind)7), "UNKNOWN") == 0);
}

static void configs(const struct harness *h)
{
    CHECK_RESULT(pushpark_config_check(NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK(strstr(pushpark_last_error(), "config_json") != NULL);
    CHECK_RESULT(pushpark_config_check(BAD_UTF8), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_config_check("{"), PUSHPARK_ERR_CONFIG);
    CHECK_RESULT(pushpark_config_check("[]"), PUSHPARK_ERR_CONFIG);
    CHECK_RESULT(pushpark_config_check("{\"apns\": {}}"), PUSHPARK_ERR_CONFIG);
    CHECK(strstr(pushpark_last_error(), "apns.auth") != NULL);
    CHECK_RESULT(pushpark_config_check("{\"apns\": {\"auth\": {\"key_file\": \"k.p8\","
                                       " \"team_id\": \"TESTTEAM01\"}}}"),
                 PUSHPARK_ERR_CONFIG);
    CHECK(strstr(pushpark_last_error(), "apns.auth.key_id") != NULL);

    char *good = config_json(h, "misuse", "\"timeout_ms\": 1000");
    CHECK_OK(pushpark_config_check(good));
    CHECK(strcmp(pushpark_last_error(), "") == 0);
    /* The park timeout, the document's or the engine's default. */
    uint32_t timeout = 0;
    CHECK_OK(pushpark_config_park_timeout(good, &timeout));
    CHECK(timeout == 1000);
    char *dflt = config_json(h, "misuse", "");
    CHECK_OK(pushpark_config_park_timeout(dflt, &timeout));
    CHECK(timeout == 30000);
    free(dflt);
    CHECK_RESULT(pushpark_config_park_timeout(NULL, &timeout), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_config_park_timeout(good, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_config_park_timeout(BAD_UTF8, &timeout), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_config_park_timeout("{", &timeout), PUSHPARK_ERR_CONFIG);
    /* One node, or one of a cluster. */
    int clustered = -1;
    CHECK_OK(pushpark_config_clustered(good, &clustered));
    CHECK(clustered == 0);
    CHECK_OK(pushpark_config_clustered("{\"fcm\": {\"service_account_file\": \"/sa.json\"},"
                                       " \"cluster\": {\"redis_url\": \"redis://127.0.0.1:1\","
                                       " \"node_id\": \"a\"}}",
                                       &clustered));
    CHECK(clustered == 1);
    CHECK_RESULT(pushpark_config_clustered(good, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_config_clustered("{", &clustered), PUSHPARK_ERR_CONFIG);
    /* The files it names are read too: the harness's key and CA are real. */
    CHECK_OK(pushpark_config_check_files(good));
    CHECK_RESULT(pushpark_config_check_files(NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_config_check_files(BAD_UTF8), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_config_check_files("{\"apns\": {\"auth\": {\"key_file\": \"/no/k.p8\","
                                             " \"key_id\": \"TESTKEY001\","
                                             " \"team_id\": \"TESTTEAM01\"}}}"),
                 PUSHPARK_ERR_CONFIG);
    CHECK(strstr(pushpark_last_error(), "apns.auth.key_file: cannot read") != NULL);
    /* An unknown key is named. */
    size_t n = strlen(good);
    char *unknown = malloc(n + 32);
    CHECK(unknown != NULL);
    memcpy(unknown, good, n - 1);
    strcpy(unknown + n - 1, ", \"bogus_key\": 1}");
    CHECK_RESULT(pushpark_config_check(unknown), PUSHPARK_ERR_CONFIG);
    CHECK(strstr(pushpark_last_error(), "bogus_key") != NULL);

    pushpark_engine *e = NOT_AN_ENGINE;
    CHECK_RESULT(pushpark_engine_new(NULL, &e), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_engine_new(good, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_engine_new(BAD_UTF8, &e), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_engine_new(unknown, &e), PUSHPARK_ERR_CONFIG);
    CHECK(e == NOT_AN_ENGINE);
    free(unknown);
    free(good);

    /* A key file that does not exist: a clear error naming it, no engine. */
    struct harness missing = *h;
    missing.key_file = "/nonexistent/AuthKey_TESTKEY001.p8";
    char *cfg = config_json(&missing, "misuse-nokey", "");
    pushpark_result r = pushpark_engine_new(cfg, &e);
    CHECK(r == PUSHPARK_ERR_CONFIG || r == PUSHPARK_ERR_IO);
    CHECK(strstr(pushpark_last_error(), "/nonexistent/AuthKey_TESTKEY001.p8") != NULL);
    CHECK(e == NOT_AN_ENGINE);
    free(cfg);

    pushpark_engine_free(NULL);
}

static void engine_functions(pushpark_engine *e)
{
    const char *aor = "sip:kim@example.com", *contact = "<sip:kim@127.0.0.1:5999>";
    pushpark_register_outcome out = {7, 7, 7, 7};

    CHECK_RESULT(pushpark_register(NULL, aor, contact, NULL, 60, &out), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_register(e, NULL, contact, NULL, 60, &out), PUSHPARK_ERR_NULL_ARG);
    CHECK(strstr(pushpark_last_error(), "aor") != NULL);
    CHECK_RESULT(pushpark_register(e, aor, NULL, NULL, 60, &out), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_register(e, BAD_UTF8, contact, NULL, 60, &out), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_register(e, aor, BAD_UTF8, NULL, 60, &out), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_register(e, aor, contact, BAD_UTF8, 60, &out), PUSHPARK_ERR_UTF8);
    CHECK(out.push_capable == 7 && out.resumed == 7);
    /* A Contact without push parameters is fine, and not push-capable. */
    CHECK_OK(pushpark_register(e, aor, contact, NULL, 60, &out));
    CHECK(out.push_capable == 0 && out.stored == 0);
    CHECK_OK(pushpark_register(e, aor, contact, NULL, 60, NULL));
    /* Push parameters that make no sense are refused. */
    CHECK_RESULT(pushpark_register(e, aor,
                                   "<sip:kim@127.0.0.1;pn-provider=apns;pn-prid=zz-not-hex;"
                                   "pn-param=" PN_PARAM ">",
                                   NULL, 60, &out),
                 PUSHPARK_ERR_INVALID);

    const char *token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    CHECK_RESULT(pushpark_add_device(NULL, aor, "k1", "apns", token, TOPIC, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, NULL, "k1", "apns", token, TOPIC, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, aor, NULL, "apns", token, TOPIC, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, aor, "k1", NULL, token, TOPIC, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, aor, "k1", "apns", NULL, TOPIC, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, aor, "k1", "apns", token, NULL, NULL),
                 PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_add_device(e, aor, "k1", "apns", token, TOPIC, BAD_UTF8),
                 PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_add_device(e, aor, "k1", "carrier-pigeon", token, TOPIC, NULL),
                 PUSHPARK_ERR_INVALID);
    CHECK_OK(pushpark_add_device(e, aor, "k1", "apns", token, TOPIC, NULL));
    CHECK_OK(pushpark_add_device(e, aor, "", "apns", TOKEN_KEYED, TOPIC, NULL));

    char *json = NULL;
    CHECK_RESULT(pushpark_devices_json_page(NULL, aor, 0, 10, &json), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_devices_json_page(e, NULL, 0, 10, &json), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_devices_json_page(e, aor, 0, 10, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_devices_json_page(e, BAD_UTF8, 0, 10, &json), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_devices_json_page(e, aor, 0, 0, &json), PUSHPARK_ERR_INVALID);
    CHECK_RESULT(pushpark_devices_json_page(e, aor, 0, PUSHPARK_PAGE_MAX + 1, &json),
                 PUSHPARK_ERR_INVALID);
    CHECK(strstr(pushpark_last_error(), "limit") != NULL);
    CHECK_RESULT(pushpark_devices_json_page(e, aor, 0, SIZE_MAX, &json), PUSHPARK_ERR_INVALID);
    CHECK(json == NULL);
    CHECK_OK(pushpark_devices_json_page(e, aor, SIZE_MAX, 10, &json));
    CHECK(strstr(json, "\"total\":2,") != NULL && strstr(json, "\"items\":[]") != NULL);
    pushpark_string_free(json);
    CHECK_OK(pushpark_devices_json_page(e, aor, 0, PUSHPARK_PAGE_MAX, &json));
    /* The device is listed, its token only in part. */
    CHECK(strstr(json, "\"key\":\"k1\"") != NULL);
    CHECK(strstr(json, "01234567") != NULL && strstr(json, token) == NULL);
    CHECK(strstr(json, "\"key\":\"fedcba98...\"") != NULL && strstr(json, TOKEN_KEYED) == NULL);
    pushpark_string_free(json);
    pushpark_string_free(NULL);

    CHECK_RESULT(pushpark_remove_device(NULL, aor, "k1"), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_remove_device(e, NULL, "k1"), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_remove_device(e, aor, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_remove_device(e, aor, BAD_UTF8), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_remove_device(e, aor, "no-such-key"), PUSHPARK_ERR_NOT_FOUND);

    uint64_t id = 99;
    const char *from = "sip:zed@example.com";
    CHECK_RESULT(pushpark_park(NULL, "c", aor, from, "Z", 1, 0, 0, &id), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_park(e, NULL, aor, from, "Z", 1, 0, 0, &id), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_park(e, "c", NULL, from, "Z", 1, 0, 0, &id), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_park(e, "c", aor, NULL, "Z", 1, 0, 0, &id), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_park(e, BAD_UTF8, aor, from, "Z", 1, 0, 0, &id), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_park(e, "c", BAD_UTF8, from, "Z", 1, 0, 0, &id), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_park(e, "c", aor, BAD_UTF8, "Z", 1, 0, 0, &id), PUSHPARK_ERR_UTF8);
    CHECK_RESULT(pushpark_park(e, "c", aor, from, BAD_UTF8, 1, 0, 0, &id), PUSHPARK_ERR_UTF8);
    CHECK(id == 99);
    CHECK_OK(pushpark_park(e, "c", aor, from, NULL, 1, 0, 0, &id));
    CHECK(id != 99);

    CHECK_RESULT(pushpark_cancel(NULL, 1), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_call_ended(NULL, 1), PUSHPARK_ERR_NULL_ARG);
    CHECK_OK(pushpark_cancel(e, 1));
    CHECK_RESULT(pushpark_cancel(e, 1), PUSHPARK_ERR_NOT_FOUND);
    CHECK_RESULT(pushpark_call_ended(e, 12345), PUSHPARK_ERR_NOT_FOUND);
    CHECK_OK(pushpark_remove_device(e, aor, "k1"));
    CHECK_RESULT(pushpark_remove_device(e, aor, "k1"), PUSHPARK_ERR_NOT_FOUND);
}

static void events_and_stats(pushpark_engine *e)
{
    int fd = -7;
    CHECK_RESULT(pushpark_event_fd(NULL, &fd), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_event_fd(e, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK(fd == -7);
    CHECK_OK(pushpark_event_fd(e, &fd));
    CHECK(fd >= 0);

    pushpark_event *ev = (pushpark_event *)16;
    CHECK_RESULT(pushpark_poll(NULL, &ev), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_poll(e, NULL), PUSHPARK_ERR_NULL_ARG);
    /* Drain whatever the calls above queued (PUSH_RESULTs), then the queue is empty. */
    ev = NULL;
    while (pushpark_poll(e, &ev) == PUSHPARK_OK) {
        pushpark_event_free(ev);
        ev = NULL;
    }
    ev = (pushpark_event *)16;
    CHECK_RESULT(pushpark_poll(e, &ev), PUSHPARK_ERR_EMPTY);
    CHECK(ev == (pushpark_event *)16);
    CHECK(strcmp(pushpark_last_error(), "") == 0);

    CHECK(pushpark_event_get_kind(NULL) == 0);
    CHECK(pushpark_event_get_host_ref(NULL) == 0);
    CHECK(pushpark_event_get_park_id(NULL) == 0);
    CHECK(pushpark_event_get_sip_code(NULL) == 0);
    CHECK(strcmp(pushpark_event_get_aor(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_device(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_reason(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_call_id(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_caller_uri(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_caller_name(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_contact(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_relay_uri(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_relay_path(NULL), "") == 0);
    CHECK(strcmp(pushpark_event_get_push_id(NULL), "") == 0);
    pushpark_event_free(NULL);

    /* The size protocol: never written past the caller's size, which is set to what was. */
    struct {
        pushpark_stats stats;
        unsigned char canary[16];
    } big;
    memset(&big, 0xCD, sizeof big);
    big.stats.size = sizeof big;
    CHECK_RESULT(pushpark_stats_get(NULL, &big.stats), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_stats_get(e, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_OK(pushpark_stats_get(e, &big.stats));
    CHECK(big.stats.size == sizeof(pushpark_stats));
    CHECK(big.stats.parked_total == 1 && big.stats.cancelled == 1);
    for (size_t i = 0; i < sizeof big.canary; i++)
        CHECK(big.canary[i] == 0xCD);

    pushpark_stats small;
    memset(&small, 0xCD, sizeof small);
    small.size = offsetof(pushpark_stats, parked_total) + sizeof(uint64_t);
    CHECK_OK(pushpark_stats_get(e, &small));
    CHECK(small.size == offsetof(pushpark_stats, parked_total) + sizeof(uint64_t));
    CHECK(small.parked_total == 1);
    CHECK(small.resumed == 0xCDCDCDCDCDCDCDCDull);

    small.size = sizeof(size_t);
    CHECK_RESULT(pushpark_stats_get(e, &small), PUSHPARK_ERR_INVALID);
    small.size = 0;
    CHECK_RESULT(pushpark_stats_get(e, &small), PUSHPARK_ERR_INVALID);

    char *json = (char *)16;
    CHECK_RESULT(pushpark_stats_json(NULL, &json), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_stats_json(e, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_parked_json_page(NULL, 0, 10, &json), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_parked_json_page(e, 0, 10, NULL), PUSHPARK_ERR_NULL_ARG);
    CHECK_RESULT(pushpark_parked_json_page(e, 0, 0, &json), PUSHPARK_ERR_INVALID);
    CHECK_RESULT(pushpark_parked_json_page(e, 0, PUSHPARK_PAGE_MAX + 1, &json),
                 PUSHPARK_ERR_INVALID);
    CHECK(json == (char *)16);
    CHECK_OK(pushpark_parked_json_page(e, 0, PUSHPARK_PAGE_MAX, &json));
    CHECK(strcmp(json, "{\"total\":0,\"offset\":0,\"items\":[]}") == 0);
    pushpark_string_free(json);
}

static atomic_int log_lines;
static atomic_int bad_lines;
static char key_line[80]; /* the first base64 line of the ES256 key's PEM */

/* Called from the engine's threads: only atomics and read-only data here. */
static void on_log(pushpark_log_level level, const char *msg, void *user)
{
    int bad = user != (void *)&log_lines || level < PUSHPARK_LOG_ERROR ||
              level > PUSHPARK_LOG_TRACE;
    /* Secrets: the key itself, or a JWT (it starts with the base64 of '{"'). */
    bad |= strstr(msg, key_line) != NULL || strstr(msg, "eyJ") != NULL;
    bad |= strstr(msg, TOKEN_KEYED) != NULL;
    if (bad)
        atomic_fetch_add(&bad_lines, 1);
    atomic_fetch_add(&log_lines, 1);
}

static void read_key_line(const char *key_file)
{
    FILE *f = fopen(key_file, "r");
    CHECK(f != NULL);
    CHECK(fgets(key_line, sizeof key_line, f) != NULL); /* -----BEGIN PRIVATE KEY----- */
    CHECK(fgets(key_line, sizeof key_line, f) != NULL);
    key_line[strcspn(key_line, "\r\n")] = 0;
    CHECK(strlen(key_line) >= 40);
    fclose(f);
}

static void logging(void)
{
    CHECK_RESULT(pushpark_set_log_callback(on_log, NULL, (pushpark_log_level)6),
                 PUSHPARK_ERR_INVALID);
    CHECK_OK(pushpark_set_log_callback(on_log, &log_lines, PUSHPARK_LOG_TRACE));
}

int main(int argc, char **argv)
{
    struct harness h = harness_args(argc, argv);
    read_key_line(h.key_file);
    static_information();
    logging();
    configs(&h);
    pushpark_engine *e = engine_new(&h, "misuse", "\"recent_register_ms\": 0");
    /* A second engine on the same store is refused (the store is locked), not corrupted. */
    char *same_store = config_json(&h, "misuse", "");
    pushpark_engine *second = NOT_AN_ENGINE;
    CHECK_RESULT(pushpark_engine_new(same_store, &second), PUSHPARK_ERR_IO);
    CHECK(strlen(pushpark_last_error()) > 0 && second == NOT_AN_ENGINE);
    free(same_store);
    engine_functions(e);
    events_and_stats(e);
    pushpark_engine_free(e);

    CHECK(atomic_load(&log_lines) > 0);
    CHECK(atomic_load(&bad_lines) == 0);
    /* The config's log_level caps the host's level. */
    int before = atomic_load(&log_lines);
    char *quiet = config_json_at_level(&h, "misuse-config-off", "", "off");
    CHECK_OK(pushpark_engine_new(quiet, &e));
    free(quiet);
    pushpark_engine_free(e);
    CHECK(atomic_load(&log_lines) == before);

    CHECK_OK(pushpark_set_log_callback(NULL, NULL, PUSHPARK_LOG_OFF));
    e = engine_new(&h, "misuse-quiet", "");
    pushpark_engine_free(e);
    CHECK(atomic_load(&log_lines) == before);
    puts("misuse: all checks passed");
    return 0;
}

/*
 * pushpark.h: the C ABI of libpushpark.
 *
 * pushpark parks a SIP INVITE for a device that has no live connection, wakes the
 * device with an Apple VoIP push (APNs over HTTP/2), and tells the host (the SIP
 * server) when to resume the call: when the device REGISTERs. On timeout it tells
 * the host to reject (480 by default).
 *
 * Conventions for every function in this file:
 * - Functions that can fail return a pushpark_result; PUSHPARK_OK (0) is success.
 *   The numbers are fixed forever; new codes are only ever added.
 * - Out-params are written only on success; on failure they are left untouched.
 * - Input pointers are const and are not kept after the call returns (the library
 *   copies what it needs). Strings are NUL-terminated UTF-8; invalid UTF-8 gives
 *   PUSHPARK_ERR_UTF8.
 * - Every pointer argument is NULL-checked: a NULL where one is not allowed gives
 *   PUSHPARK_ERR_NULL_ARG (functions that return no result code say what they do).
 * - No panic or exception ever crosses this boundary: an internal bug gives
 *   PUSHPARK_ERR_PANIC.
 * - Every function is safe to call from any thread, concurrently, with one
 *   exception: pushpark_engine_free must not race with other calls on the same engine.
 * - Each pushpark_result-returning call sets the calling thread's last-error
 *   detail string (see pushpark_last_error).
 * - The engine calls no host code from its own threads, except the log callback
 *   (see pushpark_set_log_callback).
 * - An engine does not survive fork(): its threads are not copied. In a forking
 *   server create it in the process that will use it, after forking.
 */
#ifndef PUSHPARK_H
#define PUSHPARK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ------------------------------------------------------------ */

#define PUSHPARK_VERSION_MAJOR 0
#define PUSHPARK_VERSION_MINOR 1
#define PUSHPARK_VERSION_PATCH 0
#define PUSHPARK_VERSION_STRING "0.1.0"

/*
 * The version of the loaded library, e.g. "0.1.0" (compare with
 * PUSHPARK_VERSION_STRING to detect a header/library mismatch).
 * Returns a static string: never NULL, never freed. Any thread.
 */
const char *pushpark_version(void);

/* ---- Result codes -------------------------------------------------------- */

typedef enum pushpark_result {
    PUSHPARK_OK = 0,
    PUSHPARK_ERR_NULL_ARG = 1,     /* a required pointer argument was NULL */
    PUSHPARK_ERR_UTF8 = 2,         /* a string argument is not valid UTF-8 */
    PUSHPARK_ERR_CONFIG = 3,       /* the configuration is invalid (detail names the key) */
    PUSHPARK_ERR_NO_DEVICE = 4,    /* park: the AOR has no push-capable device; reject as usual */
    PUSHPARK_ERR_LIMIT_TOTAL = 5,  /* park: the total parked-call limit is reached */
    PUSHPARK_ERR_LIMIT_AOR = 6,    /* park: the per-AOR parked-call limit is reached */
    PUSHPARK_ERR_QUEUE_FULL = 7,   /* park: the engine or the host's event polling is behind */
    PUSHPARK_ERR_DUPLICATE = 8,    /* park: this host_ref is already parked */
    PUSHPARK_ERR_NOT_FOUND = 9,    /* no such call / device (e.g. it already ended) */
    PUSHPARK_ERR_EMPTY = 10,       /* pushpark_poll: no event queued (not a failure) */
    PUSHPARK_ERR_INVALID = 11,     /* an argument's value is invalid (detail says which) */
    PUSHPARK_ERR_IO = 12,          /* file or store I/O failed */
    PUSHPARK_ERR_SHUTDOWN = 13,    /* the engine is shutting down */
    PUSHPARK_ERR_PANIC = 14,       /* an internal bug was caught; the call had no effect or
                                      an unknown one; please report it */
    PUSHPARK_ERR_INTERNAL = 15,    /* any other internal failure (detail says what) */
    PUSHPARK_ERR_UNSUPPORTED = 16, /* the Contact names a push service pushpark does not push
                                      to (RFC 8599: answer 555) */
    PUSHPARK_ERR_ENGINE_DOWN = 17  /* pushpark_engine_spawn: the engine process died or hung
                                      and is being restarted; the call had no effect, or, if
                                      it was made while the engine died, the effect is gone
                                      with it (see pushpark_engine_spawn) */
} pushpark_result;

/*
 * The code's name, e.g. "PUSHPARK_ERR_NO_DEVICE"; "PUSHPARK_UNKNOWN" for a number
 * this library does not know. Static string: never NULL, never freed. Any thread.
 */
const char *pushpark_result_name(pushpark_result code);

/*
 * A short English description of the code, e.g. "the AOR has no push device".
 * Static string: never NULL, never freed. Any thread.
 */
const char *pushpark_result_message(pushpark_result code);

/*
 * Detail about the last pushpark_result-returning call made on the calling thread:
 * "" after PUSHPARK_OK (and after PUSHPARK_ERR_EMPTY), otherwise a human-readable
 * message such as "apns.auth.key_id: missing": one line (no control characters) of at
 * most 200 bytes, whatever the input. Never NULL. The string belongs to
 * the library and stays valid until the next pushpark_result-returning call on this
 * thread; copy it to keep it. Never contains secrets (keys, JWTs) nor a whole device token.
 */
const char *pushpark_last_error(void);

/* ---- Configuration ------------------------------------------------------- */

/*
 * Checks a configuration document (JSON, see README) without starting anything:
 * parses it and reports unknown keys, missing required keys and bad values, e.g. a
 * key id or team id that is not 10 letters and digits (PUSHPARK_ERR_CONFIG,
 * pushpark_last_error() names the key path). It does not read key files or open
 * the store. Useful in a forking server's start-up, before
 * the process that will own the engine exists.
 * config_json: required. Any thread.
 */
pushpark_result pushpark_config_check(const char *config_json);

/*
 * Checks what pushpark_engine_new would refuse in the files the configuration names,
 * without starting a thread or opening the store: the checks of
 * pushpark_config_check, then reads and parses the credentials (apns.auth: the .p8
 * key; the certificate and key; the PKCS#12 file and its password), the CA file, and makes
 * sure the store directory exists (created as the engine would) and this process can
 * write in it. A separate function, so pushpark_config_check still runs on a machine
 * without the secrets (CI, packaging). A forking server calls it in its main process,
 * so a start-up that would leave every push failing stops at once.
 * Errors: PUSHPARK_ERR_CONFIG (pushpark_last_error() names the key or file and the
 * cause, never a secret), PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * config_json: required. Blocks on the disk. Any thread.
 */
pushpark_result pushpark_config_check_files(const char *config_json);

/*
 * The park timeout a configuration document gives (park.timeout_ms, or the engine's
 * default when it names none): what pushpark_park and pushpark_fork take for a
 * timeout_ms of 0. For a host that arms its own guard timer past the engine's deadline
 * without parsing the document itself. Checked as pushpark_config_check does.
 * On success *timeout_ms receives it (milliseconds, 1 to 3600000).
 * Errors: PUSHPARK_ERR_CONFIG, PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * config_json, timeout_ms: required. Any thread.
 */
pushpark_result pushpark_config_park_timeout(const char *config_json, uint32_t *timeout_ms);

/*
 * Whether a configuration document makes the engine one node of a cluster (a "cluster"
 * section): only then do the other nodes need the Path a host gives with each REGISTER
 * (pushpark_register_path), so a host without one need not build it. Checked as
 * pushpark_config_check does. On success *clustered receives 1 or 0.
 * Errors: PUSHPARK_ERR_CONFIG, PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * config_json, clustered: required. Any thread.
 */
pushpark_result pushpark_config_clustered(const char *config_json, int *clustered);

/* ---- Checking a REGISTER's Contact (no engine needed) -------------------- */

/*
 * The rules a Contact's push parameters must follow: the Team ID of pn-param must be
 * apns.auth.team_id when token auth is configured, and the topic one of the optional
 * apns.topics. Immutable plain memory, no thread, no file: it survives fork(), so a
 * forking server makes it once in its main process. Thread-safe.
 */
typedef struct pushpark_contact_rules pushpark_contact_rules;

/*
 * Makes the rules from a configuration document (the engine's; checked as
 * pushpark_config_check does, no file read). On success *out receives the rules, owned
 * by the caller until pushpark_contact_rules_free.
 * Errors: PUSHPARK_ERR_CONFIG, PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * config_json, out: required. Any thread.
 */
pushpark_result pushpark_contact_rules_new(const char *config_json, pushpark_contact_rules **out);

/* Frees rules. NULL does nothing. Must not race with calls using the same rules. */
void pushpark_contact_rules_free(pushpark_contact_rules *rules);

/*
 * Checks a REGISTER's Contact (a URI, or a header value with one or more Contacts) as
 * pushpark_register will take it, before the host saves the binding.
 * PUSHPARK_OK: *provider (when provider is not NULL) receives the static string "apns",
 *   "apns.dev" or "fcm" of the first push Contact, or NULL when no Contact has push
 *   parameters (an ordinary UA). Never free it.
 * PUSHPARK_ERR_UNSUPPORTED: a pn-provider pushpark does not push to (also "fcm" when the
 *   configuration has no "fcm" section): answer 555.
 * PUSHPARK_ERR_INVALID: malformed push parameters (pn-prid with no VoIP token, a bad
 *   pn-param, ...), a Team ID other than the configured one, a topic not in
 *   apns.topics, or a Contact over 4096 bytes: answer 400 with pushpark_last_error()
 *   as the reason phrase (one line, at most 200 bytes, never a whole token).
 * rules, contact: required; provider may be NULL. Errors also PUSHPARK_ERR_NULL_ARG,
 * PUSHPARK_ERR_UTF8. Never blocks. Any thread, concurrently.
 */
pushpark_result pushpark_contact_check(const pushpark_contact_rules *rules, const char *contact,
                                       const char **provider);

/*
 * Whether instance, a +sip.instance as a host keeps it (quotes, <>, any case: e.g. the
 * value its location table stores), names device, a device key as events give it
 * (pushpark_event_get_device): the engine compares them as it keys devices, so a host
 * finds a woken device's binding without a second notion of equal instances.
 * PUSHPARK_OK: *matches receives 1, or 0 (also when device is "" or instance empty).
 * device: required, NUL-terminated. instance: len bytes, no NUL needed; may be NULL
 * when len is 0. matches: required. Errors: PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * Never blocks. Any thread, concurrently; needs no engine.
 */
pushpark_result pushpark_instance_matches(const char *device, const char *instance, size_t len,
                                          int *matches);

/* ---- Engine -------------------------------------------------------------- */

/* An engine: the device store, the parked calls, the APNs client and its threads. */
typedef struct pushpark_engine pushpark_engine;

/*
 * Creates an engine from a configuration document (JSON): opens the device store,
 * loads the APNs credentials, starts the engine's threads. On success *out receives
 * the engine, owned by the caller until pushpark_engine_free.
 * Errors: PUSHPARK_ERR_CONFIG (bad document or unreadable key), PUSHPARK_ERR_IO
 * (store), PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8.
 * config_json, out: required. Any thread.
 */
pushpark_result pushpark_engine_new(const char *config_json, pushpark_engine **out);

/*
 * As pushpark_engine_new, but the engine runs in a child process of the caller, and
 * the handle supervises it: a crash of the engine (panic, kill -9, out of memory) or a
 * hang (no answer to a call within 1 s: the process is killed) costs no more than the
 * calls it held. On such a death:
 *   - every call parked or forked through this handle that had not ended gets one
 *     REJECT event with the configured park.reject_code / reject_reason (and its
 *     host_ref and host_data), so each call still ends exactly once;
 *   - a new engine process starts at once (after 1 s, doubling to 30 s, while it dies
 *     within a second of starting); it reads the device store, so devices stay known,
 *     except changes of the last few milliseconds not yet on disk;
 *   - meanwhile every call returns PUSHPARK_ERR_ENGINE_DOWN at once (park: reject the
 *     call as without pushpark);
 *   - the `engine_restarts` statistic counts it, and one error line is logged.
 * The event fd is the same for the handle's whole life (the host polls it as usual; it
 * also becomes readable when the engine dies or is due to restart: call pushpark_poll).
 * pushpark_engine_free stops the child cleanly (it commits every queued store change,
 * waiting up to 30 s for a stalled disk). Counters in the statistics restart from 0 with
 * each engine process, except engine_restarts.
 * The caller's process is forked, at this call and at each restart (from within any
 * call on the handle): use it only in a process that runs no other threads, as a
 * SIP server's dedicated process is (Kamailio, OpenSIPS). The child only runs library
 * code and never returns into the host's code; it exits when the caller's process dies.
 * Errors: as pushpark_engine_new (the child's start-up error), PUSHPARK_ERR_IO if the
 * process cannot be forked.
 * config_json, out: required. The handle is then used as one from pushpark_engine_new:
 * from the calling thread (one call at a time).
 */
pushpark_result pushpark_engine_spawn(const char *config_json, pushpark_engine **out);

/*
 * Stops the engine: stops and joins every thread it started, ends every call still
 * parked (no event is emitted for them after this), commits every queued store
 * change, closes the store and the event fd, and frees the engine. Blocks until
 * done. NULL is accepted and does nothing.
 * Must not run concurrently with any other call on the same engine, and must not be
 * called from the log callback. The pointer is invalid afterwards.
 */
void pushpark_engine_free(pushpark_engine *engine);

/* ---- Devices ------------------------------------------------------------- */

/* What pushpark_register did with a REGISTER. */
typedef struct pushpark_register_outcome {
    int push_capable;   /* 1 if the Contact carries RFC 8599 pn-provider/pn-prid/pn-param */
    int stored;         /* 1 if a device binding was stored or refreshed */
    int removed;        /* 1 if a binding was removed (expires == 0) */
    uint32_t resumed;   /* parked calls of the AOR woken by this REGISTER (RESUME events) */
} pushpark_register_outcome;

/*
 * Hands the engine a REGISTER the host accepted. The engine parses the RFC 8599
 * parameters (pn-provider apns|apns.dev|fcm, pn-prid, pn-param; also Linphone's
 * "<token>:voip", "<remote>:remote&<voip>:voip" and "<Team>.<bundle>.remote&voip", of
 * which the VoIP token and topic are used) of each Contact, stores or refreshes the
 * device binding (keyed by the +sip.instance, compared as a URN: "urn:uuid:" and the
 * uuid in any case; else by the token), and wakes the AOR's parked calls (RESUME /
 * APPEND_BRANCH / LATE_WAKE events, queued before this returns). A Contact without
 * push parameters is not an error (push_capable = 0) but still wakes parked calls: the
 * user is reachable now. With expires == 0 it wakes nothing, makes a park no longer
 * take the device for just registered (park.recent_register_ms), and removes the
 * binding (logout) unless the config's store.unregister_keeps_binding is true.
 * A call that returns an error has no effect at all (nothing stored, removed or woken).
 * aor:      the address of record, e.g. "sip:alice@example.com". Required.
 * contact:  the Contact URI with its parameters, or the Contact header value (several
 *           Contacts separated by commas are each applied). Required.
 * instance: the Contact's +sip.instance value (quotes and <> allowed), or NULL when
 *           absent; ignored when contact holds several Contacts (each has its own).
 * expires:  the binding's expiry in seconds; 0 removes it.
 * out:      receives the outcome; may be NULL when the caller does not need it.
 * Errors: PUSHPARK_ERR_UNSUPPORTED (a push service pushpark does not push to),
 * PUSHPARK_ERR_INVALID (malformed push parameters or ones the rules refuse, as
 * pushpark_contact_check says; aor or instance over 1024 bytes, contact over 4096),
 * PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8. Blocks on neither
 * the network nor the disk: the store change is committed shortly after by the store's
 * writer thread (a crash may lose the last few milliseconds of changes). Any thread.
 */
pushpark_result pushpark_register(pushpark_engine *engine, const char *aor, const char *contact,
                                  const char *instance, uint32_t expires,
                                  pushpark_register_outcome *out);

/*
 * pushpark_register plus the REGISTER's Call-ID and CSeq, for hosts whose workers may
 * hand REGISTERs over in another order than they came: a device (aor + device key)
 * that already had a REGISTER with the same Call-ID and a higher CSeq applied (an add
 * or a removal, remembered for max(its expires, 5 minutes)) ignores this one:
 * PUSHPARK_OK with stored = removed = resumed = 0, nothing woken (counted in the
 * statistics' registers_out_of_order). Another Call-ID is applied, and remembered.
 * call_id: the REGISTER's Call-ID (at most 1024 bytes), or NULL: no ordering (exactly
 *          pushpark_register).
 * cseq:    the REGISTER's CSeq number.
 * The other arguments, errors and threading are pushpark_register's.
 */
pushpark_result pushpark_register_ordered(pushpark_engine *engine, const char *aor,
                                          const char *contact, const char *instance,
                                          uint32_t expires, const char *call_id, uint32_t cseq,
                                          pushpark_register_outcome *out);

/*
 * pushpark_register_ordered plus the Path (RFC 3327) through which this node reaches the
 * device, for a cluster (the config's `cluster` section): the other nodes' RESUME,
 * APPEND_BRANCH and LATE_WAKE events for this device carry it (pushpark_event_get_relay_*),
 * so that they relay the call through this node, which holds the device's connection.
 * path: a Path header value naming this node first, with the device's source address
 *       (e.g. "<sip:10.0.0.2:5060;lr;received=sip:198.51.100.7:50312%3Btransport%3Dtcp>"),
 *       at most 4096 bytes; or NULL: the other nodes use their own location table
 *       (shared, e.g. with Kamailio's dmq_usrloc). Without a cluster it is not used.
 * The other arguments, errors and threading are pushpark_register_ordered's.
 */
pushpark_result pushpark_register_path(pushpark_engine *engine, const char *aor,
                                       const char *contact, const char *instance,
                                       uint32_t expires, const char *call_id, uint32_t cseq,
                                       const char *path, pushpark_register_outcome *out);

/*
 * Stores a device binding learnt other than by REGISTER (replaces one with the same
 * aor + device_key). Unlike a REGISTER it does not wake parked calls.
 * device_key: the device's identity within the AOR (e.g. its +sip.instance, taken
 *             without surrounding quotes, <> and blanks, as pushpark_register
 *             takes it); "" means the token. Required.
 * provider:   "apns" (production), "apns.dev" (sandbox) or "fcm" (Android). Required.
 * token:      the PushKit device token (hex), or the FCM registration token. Required.
 * topic:      the APNs topic, e.g. "com.example.app.voip", or the Firebase project.
 *             Required.
 * contact:    the device's Contact URI, or NULL / "" when unknown.
 * Errors: PUSHPARK_ERR_INVALID, PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8. Like
 * pushpark_register it blocks on neither the network nor the disk. Any thread.
 */
pushpark_result pushpark_add_device(pushpark_engine *engine, const char *aor,
                                    const char *device_key, const char *provider,
                                    const char *token, const char *topic, const char *contact);

/*
 * Removes one device binding. PUSHPARK_ERR_NOT_FOUND if there was none.
 * device_key: as pushpark_add_device takes it, or the token (any case) for a device
 * stored by its token; "" names no device.
 * aor, device_key: required. Any thread.
 */
pushpark_result pushpark_remove_device(pushpark_engine *engine, const char *aor,
                                       const char *device_key);

/* ---- Parking ------------------------------------------------------------- */

/*
 * Parks a call to `aor` and queues a VoIP push to each of the AOR's devices. Never
 * blocks on the network. The call then ends exactly once, reported by an event:
 * RESUME (a device registered: relay the call), REJECT (timeout or every push
 * failed: reply with the event's sip_code/reason), or by the host's own
 * pushpark_cancel. If the AOR registered within the configured
 * park.recent_register_ms before this call (the host's location lookup raced the
 * REGISTER), the call resumes at once: its RESUME is queued before this returns.
 * call_id:     the INVITE's Call-ID (goes into the push payload). Required.
 * aor:         the called address of record. Required.
 * caller_uri:  the caller's URI (push payload). Required.
 * caller_name: the caller's display name (push payload, without the quotes and
 *              backslash escapes of a SIP quoted-string); NULL means "". Cut to
 *              1024 bytes (on a character boundary), not refused.
 * host_ref:    the host's opaque reference for the call (e.g. tm's
 *              (hash_index << 32) | label); events carry it back. Unique among
 *              parked calls; not 0 (which means "no call": PUSHPARK_ERR_INVALID).
 * host_data:   the host's own data for the call, opaque to the library (any value,
 *              0 included; e.g. flags, or what it must restore on the transaction);
 *              the call's events carry it back (pushpark_event_get_host_data), so the
 *              host keeps no table of its own calls. Copied: nothing is kept that the
 *              host owns.
 * timeout_ms:  how long to wait for the device, at most 3600000 (1 hour);
 *              0 = the configured default.
 * park_id:     receives the engine's id for the call; may be NULL.
 * Errors: PUSHPARK_ERR_NO_DEVICE (at once: no push device, reject as usual),
 * PUSHPARK_ERR_LIMIT_TOTAL, PUSHPARK_ERR_LIMIT_AOR, PUSHPARK_ERR_QUEUE_FULL,
 * PUSHPARK_ERR_DUPLICATE, PUSHPARK_ERR_INVALID, PUSHPARK_ERR_SHUTDOWN,
 * PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8. On any error nothing was parked and no
 * event will follow for host_ref. Any thread.
 */
pushpark_result pushpark_park(pushpark_engine *engine, const char *call_id, const char *aor,
                              const char *caller_uri, const char *caller_name,
                              uint64_t host_ref, uint64_t host_data, uint32_t timeout_ms,
                              uint64_t *park_id);

/* A Contact the host's location lookup found for a call it forks. */
typedef struct pushpark_contact {
    const char *uri;       /* the Contact URI (with its pn-* parameters). Required. */
    const char *instance;  /* its +sip.instance (raw: quotes and <> allowed), or NULL */
    int ringing;           /* 1: the host rings it now: not pushed.
                              0: held back (push-capable, maybe asleep): pushed */
} pushpark_contact;

/*
 * One call for every case: the host rings the contacts it can reach and hands the rest
 * to the engine. Pushes every device of the AOR that is not ringing: the stored ones
 * and the held-back contacts' push parameters (keyed as pushpark_register keys them: the
 * +sip.instance, else the token; a URI that does not parse is not pushed). The call then
 * waits for the pushed devices: EVERY device that REGISTERs gives an APPEND_BRANCH event
 * (never RESUME; a device the host rings gives none), and the deadline a REJECT (the
 * host replies with it only if no branch is still ringing). pushpark_call_completed,
 * pushpark_cancel or pushpark_call_ended end it; after they return OK no event for
 * host_ref is polled. A device that registered within park.recent_register_ms before
 * this call and is not ringing gets its APPEND_BRANCH at once, without a push.
 * contacts:   n_contacts contacts (at most 1024); may be NULL when n_contacts is 0; not
 *             kept after the call.
 * The other arguments are pushpark_park's.
 * Errors: PUSHPARK_ERR_NO_DEVICE (at once: nothing to push; nothing was parked: relay the
 * ringing contacts as usual, or reject), and pushpark_park's (PUSHPARK_ERR_NULL_ARG also
 * for a NULL contacts with n_contacts > 0, or a NULL uri). On any error nothing was
 * parked and no event will follow for host_ref. Any thread.
 */
pushpark_result pushpark_fork(pushpark_engine *engine, const char *call_id, const char *aor,
                              const char *caller_uri, const char *caller_name, uint64_t host_ref,
                              uint64_t host_data, uint32_t timeout_ms,
                              const pushpark_contact *contacts, size_t n_contacts,
                              uint64_t *park_id);

/*
 * The host gave up on a call (the caller CANCELled, or the host's own timer): a parked
 * call ends as CANCELLED, a resumed one is forgotten (as by pushpark_call_ended), and
 * no further event carries host_ref: none is polled after this returns OK, even one
 * queued before; a RESUME or APPEND_BRANCH so dropped becomes its device's LATE_WAKE
 * (the device registered for the call, and nothing else would tell it the call is
 * over). A device pushed for the call that registers late gets a LATE_WAKE with
 * cause 487. PUSHPARK_ERR_NOT_FOUND if the engine no longer
 * knows the call: it was rejected (the REJECT event may still be queued: the host must
 * handle it), cancelled or ended before, or it was resumed and its timeout has passed.
 * Any thread.
 */
pushpark_result pushpark_cancel(pushpark_engine *engine, uint64_t host_ref);

/*
 * The host's resumed call finished (answered or failed): the engine forgets it and
 * stops sending APPEND_BRANCH events for it (otherwise it keeps the call, for further
 * devices, until the call's timeout); none is polled after this returns OK (those
 * queued become LATE_WAKEs, as with pushpark_cancel). On a call
 * still parked it acts as pushpark_cancel. Late wakes get cause 487 (prefer
 * pushpark_call_completed, which says how the call ended).
 * PUSHPARK_ERR_NOT_FOUND if unknown. Any thread.
 */
pushpark_result pushpark_call_ended(pushpark_engine *engine, uint64_t host_ref);

/*
 * The host's call (parked, resumed or forked) got its final reply `status`: 2xx
 * answered, 487 the caller cancelled, any other failed. Ends it as pushpark_call_ended
 * does. Every device pushed for it (push accepted by APNs or still in flight) that has
 * not registered for it is remembered until park.late_wake_ms after the call's deadline
 * or now, whichever is later; if it REGISTERs (expires > 0) in that time, one
 * LATE_WAKE event tells the host. The engine's own REJECT (timeout or every push failed)
 * does the same with the REJECT's sip_code as cause (480 by default).
 * PUSHPARK_ERR_NOT_FOUND if unknown. Any thread.
 */
pushpark_result pushpark_call_completed(pushpark_engine *engine, uint64_t host_ref,
                                        uint16_t status);

/* What the engine held a call as when the host ended it (pushpark_call_end). */
typedef enum pushpark_call_state {
    PUSHPARK_CALL_PARKED = 1,  /* parked: no device registered for it yet */
    PUSHPARK_CALL_RESUMED = 2, /* parked, then resumed (its RESUME queued, or polled) */
    PUSHPARK_CALL_FORKED = 3   /* forked (pushpark_fork), whatever branches joined it */
} pushpark_call_state;

/*
 * The host's call is over and the host does not know how the engine held it (e.g. its
 * transaction was destroyed): ends it in one step whatever its state, as
 * pushpark_call_completed(status) for a forked call and as pushpark_cancel for a parked
 * or resumed one (late wakes get cause 487), and says which it was.
 * status: the call's final reply, or 0 when it had none (used for a forked call only).
 * was:    receives the call's state; may be NULL.
 * PUSHPARK_ERR_NOT_FOUND (*was untouched) if the engine no longer knows the call. Any
 * thread.
 */
pushpark_result pushpark_call_end(pushpark_engine *engine, uint64_t host_ref, uint16_t status,
                                  pushpark_call_state *was);

/*
 * For a host that stops: ends every call it still waits an answer for with a REJECT
 * event of sip_code and reason: the calls still parked, the forked ones, and those
 * whose RESUME is queued but not yet polled (the RESUME becomes their REJECT); REJECTs
 * already queued get sip_code and reason too. The calls' other queued events are dropped.
 * The REJECTs are queued before this returns: poll them (until PUSHPARK_ERR_EMPTY) and
 * answer each call; its host_ref and host_data are the call's. Calls resumed and polled
 * are left alone (the host relayed them). Devices pushed for the calls that register
 * later get LATE_WAKE with sip_code as cause, as after the engine's own REJECT.
 * sip_code: 300 to 699 (e.g. 503: an upstream proxy tries another node), else
 *           PUSHPARK_ERR_INVALID.
 * reason:   the reason phrase, at most 200 bytes, no control character. Required.
 * Errors: PUSHPARK_ERR_INVALID, PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8. Any thread.
 */
pushpark_result pushpark_reject_waiting(pushpark_engine *engine, uint16_t sip_code,
                                        const char *reason);

/* ---- Events -------------------------------------------------------------- */

typedef enum pushpark_event_kind {
    PUSHPARK_EVENT_RESUME = 1,        /* a device of the AOR registered: look the AOR up and
                                         relay the call (once per parked call) */
    PUSHPARK_EVENT_APPEND_BRANCH = 2, /* another device of an already-resumed call registered:
                                         add a branch to the call */
    PUSHPARK_EVENT_REJECT = 3,        /* reply with sip_code and reason (timeout, or every
                                         push failed); the call has ended */
    PUSHPARK_EVENT_PUSH_RESULT = 4,   /* one push's outcome (reason: "delivered", Apple's
                                         reason e.g. "BadDeviceToken", "timed out", or
                                         "unconfirmed": sent, but the connection was lost
                                         before APNs answered, so it may or may not have
                                         reached the device; it is not sent again, and the
                                         call waits for the device until its timeout);
                                         park_id the call that caused it, host_ref and
                                         host_data its own while the engine still has the
                                         call, else 0; first_delivered 1 on the first
                                         delivered push of a call still waiting (parked or
                                         forked), once per call (e.g. to send a 180 then:
                                         not when unconfirmed, as the caller would hear a
                                         phone ring that may never have been told); purged
                                         with the call's other events when the host ends it */
    PUSHPARK_EVENT_DEVICE_GONE = 5,   /* APNs said the device's token is dead; the binding was
                                         removed (reason "token dead"); host_ref is 0 */
    PUSHPARK_EVENT_LATE_WAKE = 6      /* a device woken for a call that already ended registered:
                                         send it (its binding: device is its +sip.instance) the
                                         INVITE (call_id, caller_uri, caller_name, aor) and at
                                         once a CANCEL with Reason:
                                         SIP;cause=<sip_code>[;text="<reason>"] (200 "Call
                                         completed elsewhere", 487, 480). host_ref is 0, park_id
                                         the ended call's; once per device and call. Never a
                                         second push */
} pushpark_event_kind;

/* One event, owned by the caller of pushpark_poll until pushpark_event_free. */
typedef struct pushpark_event pushpark_event;

/*
 * The engine's event fd: an eventfd (non-blocking, close-on-exec) that is readable
 * while events are queued. Put it in the host's poll/epoll/select loop; when it is
 * readable, call pushpark_poll until it returns PUSHPARK_ERR_EMPTY. The fd belongs
 * to the engine: do not read, write or close it; it is valid until
 * pushpark_engine_free. engine, fd: required. Any thread.
 */
pushpark_result pushpark_event_fd(pushpark_engine *engine, int *fd);

/*
 * Takes the next event off the queue without blocking. On PUSHPARK_OK *event
 * receives it (owned by the caller: free it with pushpark_event_free);
 * PUSHPARK_ERR_EMPTY when no event is queued (*event untouched). Events of one call
 * come in order. engine, event: required. Any thread (typically one).
 */
pushpark_result pushpark_poll(pushpark_engine *engine, pushpark_event **event);

/* Frees an event and every string its accessors returned. NULL does nothing. */
void pushpark_event_free(pushpark_event *event);

/*
 * Accessors: read-only, any thread. Strings returned belong to the event and stay
 * valid until pushpark_event_free; they are never NULL ("" when not applicable).
 * A NULL event gives 0 / "".
 */
pushpark_event_kind pushpark_event_get_kind(const pushpark_event *event);
uint64_t pushpark_event_get_host_ref(const pushpark_event *event);   /* 0: no call */
/* The host_data given with the call to pushpark_park / pushpark_fork: on RESUME,
 * APPEND_BRANCH, REJECT, and PUSH_RESULT while it has a host_ref; 0 where host_ref is 0. */
uint64_t pushpark_event_get_host_data(const pushpark_event *event);
/* PUSH_RESULT: 1 for the first delivered push of a call still waiting, once per call;
 * else 0. */
int pushpark_event_get_first_delivered(const pushpark_event *event);
uint64_t pushpark_event_get_park_id(const pushpark_event *event);    /* 0: no call */
const char *pushpark_event_get_aor(const pushpark_event *event);
/* The device key: its +sip.instance (normalised: no quotes or <>, a URN's "urn:" and
 * namespace in lower case, a UUID's too: see pushpark_instance_matches), or its token cut
 * short (never whole). */
const char *pushpark_event_get_device(const pushpark_event *event);
uint16_t pushpark_event_get_sip_code(const pushpark_event *event);   /* REJECT: e.g. 480;
                                                                        LATE_WAKE: the cause */
const char *pushpark_event_get_reason(const pushpark_event *event);  /* SIP or APNs reason */
/* RESUME, APPEND_BRANCH, REJECT, LATE_WAKE: the call's Call-ID, caller URI and name. */
const char *pushpark_event_get_call_id(const pushpark_event *event);
const char *pushpark_event_get_caller_uri(const pushpark_event *event);
const char *pushpark_event_get_caller_name(const pushpark_event *event);
/* RESUME, APPEND_BRANCH, LATE_WAKE: the REGISTER's Contact, pn-prid cut short (never a
 * whole token), for logs: route by the binding the host saved, not by this string. */
const char *pushpark_event_get_contact(const pushpark_event *event);
/* RESUME, APPEND_BRANCH, LATE_WAKE of a device that registered on another node of the
 * cluster, whose node gave a Path (pushpark_register_path): the device's whole Contact
 * URI (the branch's Request-URI; do not log it, it holds the push token) and that Path
 * (the branch's route set: its first URI is the registering node, the next hop). Else ""
 * both: the host finds the device in its own location table. */
const char *pushpark_event_get_relay_uri(const pushpark_event *event);
const char *pushpark_event_get_relay_path(const pushpark_event *event);
/* PUSH_RESULT: the push's id, a UUID: the push_id of its payload, which the app sees, and
 * for APNs the apns-id it was sent with, which finds it in Apple's delivery log. Else "". */
const char *pushpark_event_get_push_id(const pushpark_event *event);

/* The kind's name, e.g. "RESUME"; "UNKNOWN" otherwise. Static string, never NULL. */
const char *pushpark_event_kind_name(pushpark_event_kind kind);

/* ---- Statistics and listings --------------------------------------------- */

/*
 * Counters since the engine started (parked_now, devices_stored, events_waiting and
 * resumed_now are current values). Forward compatible: set
 * `size` to sizeof(pushpark_stats) before the call; the library fills at most that
 * many bytes and sets `size` to the number of bytes it filled, so an older library
 * fills a prefix and a newer one never writes past the caller's struct. Fields are
 * only ever appended.
 */
typedef struct pushpark_stats {
    size_t size;
    uint64_t parked_now;             /* calls parked at this moment, nothing ringing */
    uint64_t parked_total;           /* calls ever parked */
    uint64_t resumed;                /* ended RESUMED */
    uint64_t rejected_timeout;       /* ended REJECTED: timeout */
    uint64_t rejected_push_failed;   /* ended REJECTED: every push failed permanently */
    uint64_t cancelled;              /* ended CANCELLED by the host (incl. at engine
                                        free and pushpark_reject_waiting) */
    uint64_t park_no_device;         /* park refused: no push device */
    uint64_t park_refused_limit;     /* park refused: a limit or the queue was full */
    uint64_t pushes_sent;            /* pushes written to APNs */
    uint64_t pushes_delivered;       /* APNs answered 200 */
    uint64_t pushes_failed_permanent;/* APNs refused for good (dead token, topic, payload) */
    uint64_t pushes_failed_transient;/* no answer before the call's deadline despite retries
                                        (429, 5xx, no connection), or not sent at all */
    uint64_t devices_gone;           /* bindings removed because APNs said the token is dead */
    uint64_t resume_latency_p50_us;  /* park -> RESUME latency, median, microseconds */
    uint64_t resume_latency_p99_us;  /* park -> RESUME latency, 99th percentile */
    uint64_t append_branches;        /* APPEND_BRANCH events (further devices of a call) */
    uint64_t pushes_coalesced;       /* calls whose push was folded into a later one (or
                                        left to the cluster node that just pushed it) */
    uint64_t devices_stored;         /* device bindings in the store now */
    uint64_t events_waiting;         /* events queued, not yet polled */
    uint64_t resumed_now;            /* calls resumed, or forked and ringing, still known */
    uint64_t late_wakes;             /* LATE_WAKE events */
    uint64_t registers_out_of_order; /* REGISTERs ignored: an older CSeq (register_ordered) */
    uint64_t pushes_replayed;        /* requests sent again that APNs had certainly not processed
                                        (past a GOAWAY, REFUSED_STREAM, never written) */
    uint64_t events_dropped;         /* informational events (PUSH_RESULT, DEVICE_GONE,
                                        LATE_WAKE) dropped: the event queue was full
                                        (2 x park.max_total), or the engine was behind */
    uint64_t devices_evicted;        /* bindings dropped: the AOR had store.max_devices_per_aor */
    uint64_t engine_restarts;        /* pushpark_engine_spawn: engine processes restarted */
    uint64_t pushes_unconfirmed;     /* pushes sent whose connection was lost before APNs
                                        answered: maybe delivered, never sent again (PUSH_RESULT
                                        "unconfirmed"); neither delivered nor failed */
    /* With a "cluster" config section (0 without): */
    uint64_t cluster_connected;      /* 1 while connected to Redis, else 0 */
    uint64_t cluster_wakes_sent;     /* REGISTERs of this node published to the other nodes */
    uint64_t cluster_wakes_received; /* wakes from other nodes handled here */
    uint64_t cluster_bindings_synced;/* binding changes written to Redis or applied from it */
    uint64_t cluster_failures;       /* Redis commands failed or timed out, jobs done while
                                        Redis was away or dropped (queue full) */
    /* Per push service (the pushes_* totals above cover both): sent, delivered, and sent
     * but not delivered (refused, timed out; unconfirmed ones are neither). */
    uint64_t apns_pushes_sent;
    uint64_t apns_pushes_delivered;
    uint64_t apns_pushes_failed;
    uint64_t fcm_pushes_sent;        /* Android devices (pn-provider=fcm), with an "fcm" section */
    uint64_t fcm_pushes_delivered;
    uint64_t fcm_pushes_failed;
    uint64_t cluster_wakes_dropped;  /* wakes of this node the other nodes never got: queue
                                        full, Redis away, publish failed (also in
                                        cluster_failures) */
} pushpark_stats;

/*
 * Fills *stats (see pushpark_stats for the size protocol). PUSHPARK_ERR_INVALID if
 * stats->size is smaller than offsetof(pushpark_stats, parked_now) + 8.
 * engine, stats: required. Any thread.
 */
pushpark_result pushpark_stats_get(pushpark_engine *engine, pushpark_stats *stats);

/*
 * JSON documents for management commands. On success *json receives a new
 * NUL-terminated UTF-8 string owned by the caller: free it with pushpark_string_free
 * (not free()). engine, json (and aor): required. Any thread.
 *
 * pushpark_stats_json: every statistic as one object (a superset of pushpark_stats).
 */
pushpark_result pushpark_stats_json(pushpark_engine *engine, char **json);

/* The most items a listing page holds. */
#define PUSHPARK_PAGE_MAX 1000

/*
 * Listings, a page at a time so that a reply stays small however long the listing:
 * {"total":N,"offset":O,"items":[...]}, the items from position `offset` (0: the first)
 * of the N, at most `limit` of them (none when offset >= N). Pages of one listing
 * follow its order, so offsets 0, limit, 2*limit, ... give each item once while the
 * listing does not change meanwhile. On success *json receives a new NUL-terminated
 * UTF-8 string owned by the caller: free it with pushpark_string_free (not free()).
 * Errors: PUSHPARK_ERR_INVALID when limit is 0 or over PUSHPARK_PAGE_MAX (*json
 * untouched), PUSHPARK_ERR_NULL_ARG, PUSHPARK_ERR_UTF8. engine, json (and aor):
 * required. Any thread.
 *
 * pushpark_parked_json_page:  the parked calls by park id: park_id, host_ref, call_id,
 *                             aor, age_ms, state ("parked" / "ringing"), forked.
 * pushpark_devices_json_page: the AOR's devices, the least recently registered first:
 *                             key, provider, topic, contact, last_register_unix, token
 *                             (a token is never shown whole: not in key, contact's
 *                             pn-prid nor token).
 */
pushpark_result pushpark_parked_json_page(pushpark_engine *engine, size_t offset, size_t limit,
                                          char **json);
pushpark_result pushpark_devices_json_page(pushpark_engine *engine, const char *aor,
                                           size_t offset, size_t limit, char **json);

/* Frees a string returned by this library. NULL does nothing. */
void pushpark_string_free(char *s);

/* ---- Logging ------------------------------------------------------------- */

typedef enum pushpark_log_level {
    PUSHPARK_LOG_OFF = 0,
    PUSHPARK_LOG_ERROR = 1,
    PUSHPARK_LOG_WARN = 2,
    PUSHPARK_LOG_INFO = 3,
    PUSHPARK_LOG_DEBUG = 4,
    PUSHPARK_LOG_TRACE = 5
} pushpark_log_level;

/*
 * A log sink. msg is one NUL-terminated UTF-8 line without a trailing newline,
 * valid only during the call. THIS IS THE ONE HOST FUNCTION THE LIBRARY CALLS FROM
 * ITS OWN THREADS: it may be called from any thread, concurrently, including
 * threads the host did not create, so it must be thread-safe, must not block for
 * long, and must not call any pushpark_ function.
 */
typedef void (*pushpark_log_fn)(pushpark_log_level level, const char *msg, void *user);

/*
 * Routes the library's log messages of level <= max_level to fn(level, msg, user).
 * The config's "log_level" (applied by pushpark_engine_new) caps it further: the
 * stricter of the two wins.
 * fn == NULL (or max_level == PUSHPARK_LOG_OFF) turns logging off. May be called
 * again to change the sink or the level; once it returns, the previous sink is no
 * longer called. Messages never contain secrets (keys, JWTs) nor whole device tokens.
 * `user` is passed back
 * as is and must stay valid while the sink is installed.
 * Errors: PUSHPARK_ERR_INVALID if max_level is out of range, or if the process
 * already has another logger for the Rust `log` facade (only possible when the
 * library is linked into a Rust program). Process-wide; any thread.
 */
pushpark_result pushpark_set_log_callback(pushpark_log_fn fn, void *user,
                                          pushpark_log_level max_level);

#ifdef __cplusplus
}
#endif

#endif /* PUSHPARK_H */

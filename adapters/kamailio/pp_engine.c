/*
 * The engine process: holds the pushpark engine, serves the workers' requests from the
 * request pipe and turns the engine's events into tm actions (t_continue and friends).
 * The engine itself runs in a child of this process (pushpark_engine_spawn): Kamailio stops
 * altogether when one of its own processes dies, so a crash of the engine must not be one.
 * When it dies, the library ends each call it held with a REJECT event and starts another.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cfg/cfg_struct.h"
#include "core/dprint.h"
#include "core/mem/shm_mem.h"
#include "core/pt.h"
#include "core/sr_module.h"
#include "pushpark.h"
#include "pp_engine.h"
#include "pp_ipc.h"
#include "pp_late.h"
#include "pp_tm.h"
#include "pushpark_mod.h"

/* How often a failed engine start is retried (e.g. a key file that appears later). */
#define PP_RETRY_MS 10000
/* Events handled per loop turn before looking at the request pipe again: each can run the
 * resume route, and SIP workers wait for the answer to their park request meanwhile. */
#define PP_EVENT_BATCH 8

static pushpark_engine *engine = NULL;

/* ---- Calls the engine process tracks: what tm needs back on RESUME/REJECT ---------- */
/* In malloc memory, not pkg: up to park.max_total entries would not fit the pkg pool. */

typedef struct pp_call {
	uint64_t ref;
	uint32_t fr_ticks;
	int rang;        /* provisional reply sent */
	int fork;        /* pushpark_fork(): may ring elsewhere meanwhile */
	char *aor;       /* in the same allocation */
	struct pp_call *next;
} pp_call_t;

#define PP_CALLS_SIZE 4096
static pp_call_t *calls[PP_CALLS_SIZE];

static unsigned int pp_call_slot(uint64_t ref)
{
	return (unsigned int)((ref ^ (ref >> 32)) * 2654435761u) % PP_CALLS_SIZE;
}

static void pp_call_add(uint64_t ref, uint32_t fr_ticks, const char *aor, int fork)
{
	unsigned int i = pp_call_slot(ref);
	size_t len = strlen(aor);
	pp_call_t *c = malloc(sizeof(*c) + len + 1);

	if(c == NULL) {
		LM_ERR("out of memory: call %llx untracked\n", (unsigned long long)ref);
		return;
	}
	c->ref = ref;
	c->fr_ticks = fr_ticks;
	c->rang = 0;
	c->fork = fork;
	c->aor = (char *)(c + 1);
	memcpy(c->aor, aor, len + 1);
	c->next = calls[i];
	calls[i] = c;
}

/* Unlinks and returns the call (caller frees it), or NULL. */
static pp_call_t *pp_call_take(uint64_t ref)
{
	pp_call_t **p;
	pp_call_t *c;

	for(p = &calls[pp_call_slot(ref)]; *p; p = &(*p)->next) {
		if((*p)->ref == ref) {
			c = *p;
			*p = c->next;
			return c;
		}
	}
	return NULL;
}

/* Drops the call; returns its saved fr timeout (0: unknown). */
static uint32_t pp_call_forget(uint64_t ref)
{
	pp_call_t *c = pp_call_take(ref);
	uint32_t fr = 0;

	if(c) {
		fr = c->fr_ticks;
		free(c);
	}
	return fr;
}

/* ---- Logging: engine threads -> this process's loop -> Kamailio's log -------------- */

/* The log callback runs on the engine's threads, where Kamailio's logging (per-process
 * state, cfg framework) is not safe. It only writes the line to a pipe; the loop logs it.
 * A line is written whole or dropped (non-blocking, <= PIPE_BUF). */
static int log_rd = -1, log_wr = -1;
static volatile unsigned long log_dropped = 0;

typedef struct pp_logrec {
	uint16_t size;
	uint8_t level;
	char text[PIPE_BUF - 3];
} pp_logrec_t;

static void pp_log_cb(pushpark_log_level level, const char *msg, void *user)
{
	pp_logrec_t rec;
	size_t len = strlen(msg);

	if(len > sizeof(rec.text) - 1)
		len = sizeof(rec.text) - 1;
	rec.level = (uint8_t)level;
	memcpy(rec.text, msg, len);
	rec.text[len] = '\0';
	rec.size = (uint16_t)(offsetof(pp_logrec_t, text) + len + 1);
	if(write(log_wr, &rec, rec.size) != rec.size)
		__atomic_add_fetch(&log_dropped, 1, __ATOMIC_RELAXED);
}

static void pp_log_line(int level, const char *text)
{
	switch(level) {
		case PUSHPARK_LOG_ERROR:
			LM_ERR("engine: %s\n", text);
			break;
		case PUSHPARK_LOG_WARN:
			LM_WARN("engine: %s\n", text);
			break;
		case PUSHPARK_LOG_INFO:
			LM_INFO("engine: %s\n", text);
			break;
		default:
			LM_DBG("engine: %s\n", text);
	}
}

static void pp_log_drain(void)
{
	static char buf[64 * 1024];
	static size_t have = 0;
	pp_logrec_t *rec;
	unsigned long dropped;
	size_t off;
	ssize_t n;

	while((n = read(log_rd, buf + have, sizeof(buf) - have)) > 0) {
		have += n;
		off = 0;
		while(have - off >= sizeof(uint16_t)) {
			rec = (pp_logrec_t *)(buf + off);
			if(have - off < rec->size)
				break;
			pp_log_line(rec->level, rec->text);
			off += rec->size;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	dropped = __atomic_exchange_n(&log_dropped, 0, __ATOMIC_RELAXED);
	if(dropped)
		LM_WARN("%lu engine log lines dropped (log pipe full)\n", dropped);
}

static pushpark_log_level pp_log_level(void)
{
	int kl = get_debug_level(LOG_MNAME, LOG_MNAME_LEN);

	if(kl >= L_DBG)
		return PUSHPARK_LOG_DEBUG;
	if(kl >= L_INFO)
		return PUSHPARK_LOG_INFO;
	if(kl >= L_WARN)
		return PUSHPARK_LOG_WARN;
	return PUSHPARK_LOG_ERROR;
}

/* Follows Kamailio's debug level (e.g. kamcmd cfg.set_now_int core debug 3). */
static void pp_log_follow_level(void)
{
	static pushpark_log_level current = PUSHPARK_LOG_OFF;
	pushpark_log_level level = pp_log_level();

	if(level == current)
		return;
	if(pushpark_set_log_callback(pp_log_cb, NULL, level) == PUSHPARK_OK)
		current = level;
	else
		LM_ERR("cannot install the engine's log sink: %s\n", pushpark_last_error());
}

static int pp_log_init(void)
{
	int fds[2];

	if(pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		LM_ERR("pipe: %s\n", strerror(errno));
		return -1;
	}
	log_rd = fds[0];
	log_wr = fds[1];
	pp_log_follow_level();
	return 0;
}

/* ---- Engine start ------------------------------------------------------------------- */

static int pp_engine_start(void)
{
	char *json = pp_read_file(pp_config_path);
	pushpark_result rc;

	if(json == NULL)
		return -1;
	rc = pushpark_engine_spawn(json, &engine);
	free(json);
	if(rc != PUSHPARK_OK) {
		LM_ERR("engine not started (%s: %s); pushpark_park() fails until it is, retry in"
			   " %d s\n",
				pushpark_result_name(rc), pushpark_last_error(), PP_RETRY_MS / 1000);
		engine = NULL;
		return -1;
	}
	LM_INFO("engine %s started (config %s)\n", pushpark_version(), pp_config_path);
	return 0;
}

/* ---- Worker requests ---------------------------------------------------------------- */

static char *pp_shm_copy(char *s)
{
	size_t len = strlen(s);
	char *c = shm_malloc(len + 1);

	if(c)
		memcpy(c, s, len + 1);
	else
		SHM_MEM_ERROR;
	return c;
}

static void pp_listing(const pp_req_t *r, pp_rpl_t *rpl)
{
	char *json = NULL;

	switch(r->h.op) {
		case PP_OP_STATS:
			rpl->result = pushpark_stats_json(engine, &json);
			break;
		case PP_OP_PARKED:
			rpl->result = pushpark_parked_json_page(engine, r->h.offset, r->h.limit, &json);
			break;
		default:
			rpl->result = pushpark_devices_json_page(
					engine, pp_req_str(r, 0), r->h.offset, r->h.limit, &json);
	}
	if(rpl->result == PUSHPARK_OK) {
		rpl->json = pp_shm_copy(json);
		if(rpl->json == NULL)
			rpl->result = PUSHPARK_ERR_INTERNAL;
	}
	pushpark_string_free(json);
}

/* "Contact: *" as the engine takes it, store.unregister_keeps_binding included. */
static void pp_remove_all(const char *aor)
{
	pushpark_register_outcome out;

	if(pushpark_register(engine, aor, "*", NULL, 0, &out) != PUSHPARK_OK)
		LM_WARN("devices of %s not removed: %s\n", aor, pushpark_last_error());
	else
		LM_INFO("%s unregistered every contact: push devices %s\n", aor,
				out.removed ? "removed" : "none removed");
}

/* FORK: the destination set's push-capable contacts follow the park strings in pairs. */
static pushpark_result pp_fork(const pp_req_t *r, uint64_t *park_id)
{
	pushpark_contact cs[PP_FORK_MAX_CONTACTS];
	const char *inst;
	int i, n = r->h.nstrs > 4 ? (r->h.nstrs - 4) / 2 : 0;

	for(i = 0; i < n; i++) {
		cs[i].uri = pp_req_str(r, 4 + 2 * i);
		inst = pp_req_str(r, 5 + 2 * i);
		cs[i].instance = *inst ? inst : NULL;
		cs[i].ringing = (r->h.ringing >> i) & 1;
	}
	return pushpark_fork(engine, pp_req_str(r, 0), pp_req_str(r, 1), pp_req_str(r, 2),
			pp_req_str(r, 3), r->h.host_ref, r->h.timeout_ms, n ? cs : NULL, n, park_id);
}

static void pp_handle_req(const pp_req_t *r)
{
	pp_rpl_t rpl;
	pushpark_register_outcome out;
	pushpark_result rc;

	if(pp_ipc_expired(r)) {
		/* E.g. pushpark_park() returned -1 already: parking the call now would push the
		 * phone for a call the script has answered or relayed. */
		LM_WARN("request %d (%s) not served: its sender stopped waiting (ipc_timeout)\n",
				r->h.op, pp_req_str(r, 0));
		return;
	}
	memset(&rpl, 0, sizeof(rpl));
	switch(r->h.op) {
		case PP_OP_PARK:
			rpl.result = pushpark_park(engine, pp_req_str(r, 0), pp_req_str(r, 1),
					pp_req_str(r, 2), pp_req_str(r, 3), r->h.host_ref, r->h.timeout_ms,
					&rpl.park_id);
			if(rpl.result == PUSHPARK_OK)
				pp_call_add(r->h.host_ref, r->h.fr_ticks, pp_req_str(r, 1), 0);
			else if(rpl.result != PUSHPARK_ERR_NO_DEVICE)
				LM_WARN("park %s: %s\n", pp_req_str(r, 0), pushpark_last_error());
			break;
		case PP_OP_FORK:
			rpl.result = pp_fork(r, &rpl.park_id);
			if(rpl.result == PUSHPARK_OK)
				pp_call_add(r->h.host_ref, 0, pp_req_str(r, 1), 1);
			else if(rpl.result != PUSHPARK_ERR_NO_DEVICE)
				LM_WARN("fork %s: %s\n", pp_req_str(r, 0), pushpark_last_error());
			break;
		case PP_OP_REGISTER:
			rc = pushpark_register_ordered(engine, pp_req_str(r, 0), pp_req_str(r, 1),
					*pp_req_str(r, 2) ? pp_req_str(r, 2) : NULL, r->h.expires,
					*pp_req_str(r, 3) ? pp_req_str(r, 3) : NULL, r->h.cseq, &out);
			if(rc != PUSHPARK_OK)
				LM_WARN("register %s: %s: %s\n", pp_req_str(r, 0), pushpark_result_name(rc),
						pushpark_last_error());
			else
				LM_DBG("register %s: push %d stored %d removed %d resumed %u\n",
						pp_req_str(r, 0), out.push_capable, out.stored, out.removed,
						out.resumed);
			break;
		case PP_OP_REMOVE_ALL:
			pp_remove_all(pp_req_str(r, 0));
			break;
		case PP_OP_CANCEL:
			if(pushpark_cancel(engine, r->h.host_ref) == PUSHPARK_OK) {
				update_stat(pp_st_cancelled, 1);
				pp_call_forget(r->h.host_ref);
			}
			break;
		case PP_OP_COMPLETED:
			/* The call's final reply went out: devices woken for it from now on get
			 * the INVITE + CANCEL of a late wake, with this status as the cause. */
			free(pp_call_take(r->h.host_ref));
			pushpark_call_completed(engine, r->h.host_ref, r->h.status);
			break;
		case PP_OP_ENDED: {
			/* tm destroyed the transaction. A call still in our table was parked: tm
			 * ended it on its own. A resumed one (no longer in the table) only stops its
			 * second-device branches. */
			pp_call_t *c = pp_call_take(r->h.host_ref);
			if(c != NULL && c->fork) {
				pushpark_call_completed(engine, r->h.host_ref, r->h.status);
			} else if(c != NULL) {
				if(pushpark_cancel(engine, r->h.host_ref) == PUSHPARK_OK)
					LM_WARN("call %llx ended by tm while parked\n",
							(unsigned long long)r->h.host_ref);
			} else {
				pushpark_call_ended(engine, r->h.host_ref);
			}
			free(c);
			break;
		}
		case PP_OP_STATS:
		case PP_OP_PARKED:
		case PP_OP_DEVICES:
			pp_listing(r, &rpl);
			break;
		default:
			LM_CRIT("unknown request %d\n", r->h.op);
			return;
	}
	if(pp_ipc_reply(r, &rpl) < 0 && (r->h.op == PP_OP_PARK || r->h.op == PP_OP_FORK)
			&& rpl.result == PUSHPARK_OK) {
		/* The worker gave up just before the answer: the script handles the call. */
		LM_WARN("call %s parked after its worker stopped waiting: cancelled\n",
				pp_req_str(r, 0));
		pushpark_cancel(engine, r->h.host_ref);
		pp_call_forget(r->h.host_ref);
	}
}

/* ---- Engine events ------------------------------------------------------------------- */

static void pp_ring_aor(const char *aor)
{
	pp_call_t *c;
	int i;

	for(i = 0; i < PP_CALLS_SIZE; i++)
		for(c = calls[i]; c; c = c->next)
			if(!c->rang && strcmp(c->aor, aor) == 0) {
				c->rang = 1;
				pp_tm_provisional(c->ref, pp_provisional_code, &pp_provisional_reason);
			}
}

static void pp_handle_event(pushpark_event *ev)
{
	uint64_t ref = pushpark_event_get_host_ref(ev);
	const char *reason = pushpark_event_get_reason(ev);
	pp_call_t *c;
	uint32_t fr;
	int code, ret;

	switch(pushpark_event_get_kind(ev)) {
		case PUSHPARK_EVENT_RESUME:
			fr = pp_call_forget(ref);
			if(pp_tm_resume(ref, fr) < 0)
				pushpark_call_ended(engine, ref);
			break;
		case PUSHPARK_EVENT_REJECT:
			c = pp_call_take(ref);
			code = pp_reply_code ? pp_reply_code : pushpark_event_get_sip_code(ev);
			if(pp_reply_code && pp_reply_reason.len > 0)
				reason = pp_reply_reason.s;
			if(c && c->fork)
				ret = pp_tm_fork_reject(ref, code, reason);
			else
				ret = pp_tm_reject(ref, c ? c->fr_ticks : 0, code, reason);
			free(c);
			if(ret == 0)
				LM_INFO("call %llx to %s rejected: %d %s\n", (unsigned long long)ref,
						pushpark_event_get_aor(ev), code, reason);
			else if(ret == 1)
				LM_INFO("call %llx to %s: nobody woke in time, the ringing branches go"
						" on\n",
						(unsigned long long)ref, pushpark_event_get_aor(ev));
			break;
		case PUSHPARK_EVENT_APPEND_BRANCH:
			if(pp_tm_append(ref, pushpark_event_get_aor(ev), pushpark_event_get_device(ev))
					< 0)
				pushpark_call_ended(engine, ref);
			break;
		case PUSHPARK_EVENT_LATE_WAKE:
			pp_late_wake(ev);
			break;
		case PUSHPARK_EVENT_PUSH_RESULT:
			if(strcmp(reason, "delivered") != 0) {
				LM_INFO("push to %s device %s failed: %s\n", pushpark_event_get_aor(ev),
						pushpark_event_get_device(ev), reason);
				break;
			}
			LM_DBG("push to %s device %s delivered\n", pushpark_event_get_aor(ev),
					pushpark_event_get_device(ev));
			if(pp_provisional_code)
				pp_ring_aor(pushpark_event_get_aor(ev));
			break;
		case PUSHPARK_EVENT_DEVICE_GONE:
			LM_INFO("device %s of %s removed: APNs says its token is dead (%s)\n",
					pushpark_event_get_device(ev), pushpark_event_get_aor(ev), reason);
			break;
		default:
			LM_DBG("event %d ignored\n", pushpark_event_get_kind(ev));
	}
}

static void pp_drain_events(void)
{
	pushpark_event *ev;
	int n;

	for(n = 0; n < PP_EVENT_BATCH; n++) {
		if(pushpark_poll(engine, &ev) != PUSHPARK_OK)
			return;
		pp_handle_event(ev);
		pushpark_event_free(ev);
	}
}

/* ---- The process ------------------------------------------------------------------------ */

/* Kamailio's children _exit() on SIGTERM/SIGINT (a shutdown, systemd stop, Ctrl-C). The
 * engine process handles them itself: freeing the engine first commits the store's pending
 * changes, so a clean stop loses no binding even while the disk stalls. */
static volatile sig_atomic_t pp_stopping = 0;

static void pp_on_stop(int signo)
{
	pp_stopping = 1;
}

static void pp_stop_on_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pp_on_stop; /* no SA_RESTART: poll() returns at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static void pp_engine_stop(void)
{
	pp_ipc_set_ready(0);
	if(engine != NULL) {
		LM_INFO("stopping the engine: committing the store's pending changes\n");
		pushpark_engine_free(engine);
		engine = NULL;
	}
	pp_log_drain();
	_exit(0);
}

static void pp_engine_loop(void)
{
	struct pollfd pfd[3];
	long next_try = 0;
	int ev_fd = -1;

	for(;;) {
		pp_ipc_engine_alive();
		cfg_update();
		pp_log_follow_level();
		if(engine == NULL && pp_now_ms() >= next_try) {
			if(pp_engine_start() == 0 && pushpark_event_fd(engine, &ev_fd) == PUSHPARK_OK) {
				pp_ipc_set_ready(1);
			} else {
				next_try = pp_now_ms() + PP_RETRY_MS;
			}
		}
		pfd[0].fd = log_rd;
		pfd[0].events = POLLIN;
		pfd[1].fd = engine ? pp_ipc_reader_fd() : -1;
		pfd[1].events = POLLIN;
		pfd[2].fd = engine ? ev_fd : -1;
		pfd[2].events = POLLIN;
		/* The timeout only paces cfg_update() and start retries. */
		if(poll(pfd, 3, 1000) < 0 && errno != EINTR) {
			LM_ERR("poll: %s\n", strerror(errno));
			sleep(1);
		}
		if(pp_stopping)
			pp_engine_stop();
		pp_log_drain();
		if(engine == NULL)
			continue;
		if(pfd[1].revents)
			pp_ipc_drain(pp_handle_req);
		if(pfd[2].revents)
			pp_drain_events();
	}
}

int pp_engine_forking = 0;

int pp_engine_fork(void)
{
	int pid;

	pp_engine_forking = 1; /* seen by this module's child_init() in the new process */
	pid = fork_process(PROC_RPC, "pushpark engine", 1);
	if(pid < 0)
		return -1;
	if(pid > 0) {
		pp_engine_forking = 0;
		pp_ipc_close_reader();
		return 0;
	}
	pp_ipc_engine_init();
	if(cfg_child_init())
		return -1;
	if(pp_log_init() < 0)
		return -1;
	pp_stop_on_signals();
	pp_engine_loop();
	return -1; /* not reached */
}

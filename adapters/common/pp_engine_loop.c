/*
 * The engine process's loop (see pp_host.h): holds the pushpark engine, serves the
 * workers' requests from the request pipe and turns the engine's events into host
 * actions. The engine itself runs in a child of this process (pushpark_engine_spawn):
 * the host stops altogether when one of its own processes dies, so a crash of the
 * engine must not be one. When it dies, the library ends each call it held with a
 * REJECT event and starts another.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pp_config.h"
#include "pp_events.h"
#include "pp_host.h"
#include "pp_ipc.h"
#include "pp_log.h"
#include "pp_modparams.h"
#include "pp_requests.h"

/* How often a failed engine start is retried (e.g. a key file that appears later). */
#define PP_RETRY_MS 10000

static pushpark_engine *engine = NULL;

static int pp_engine_start(void)
{
	char *json = pp_read_file(pp_config_path);
	pushpark_result rc;

	if(json == NULL)
		return -1;
	rc = pushpark_engine_spawn(json, &engine);
	free(json);
	if(rc != PUSHPARK_OK) {
		LM_ERR("engine not started (%s: %s); parking fails until it is, retry in %d s\n",
				pushpark_result_name(rc), pushpark_last_error(), PP_RETRY_MS / 1000);
		engine = NULL;
		return -1;
	}
	LM_INFO("engine %s started (config %s)\n", pushpark_version(), pp_config_path);
	return 0;
}

static void pp_serve(void *ctx, const pp_req_t *r)
{
	pp_request_serve(engine, r);
}

/* SIP servers' children _exit() on SIGTERM/SIGINT (a shutdown, systemd stop, Ctrl-C). The
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

/* The server stops: each call still waiting for a device gets its final reply from here
 * rather than none (the caller would retransmit to a dead node until its timer fires).
 * 503: an upstream proxy or load balancer tries another node, where the call parks again
 * and the device's REGISTER reaches it (RFC 3261 16.7). */
static void pp_end_waiting_calls(void)
{
	pushpark_event *ev;
	int n = 0;

	if(engine == NULL)
		return;
	if(pushpark_reject_waiting(engine, 503, "Service Unavailable") != PUSHPARK_OK) {
		LM_ERR("stopping: waiting calls not answered: %s\n", pushpark_last_error());
		return;
	}
	/* Their REJECTs, and whatever else was queued (not acted on: stopping). */
	while(pushpark_poll(engine, &ev) == PUSHPARK_OK) {
		if(pushpark_event_get_kind(ev) == PUSHPARK_EVENT_REJECT) {
			pp_reject_call(ev, pushpark_event_get_sip_code(ev),
					pushpark_event_get_reason(ev));
			n++;
		}
		pushpark_event_free(ev);
	}
	if(n)
		LM_INFO("stopping: %d call(s) waiting for a device answered 503\n", n);
}

static void pp_engine_stop(void)
{
	pp_ipc_set_ready(0);
	/* Workers hand REGISTERs over without waiting and have answered them 200: what they
	 * queued before the stop is served, or a device just registered would be lost. */
	if(engine != NULL)
		pp_ipc_drain(pp_serve, NULL);
	pp_end_waiting_calls();
	if(engine != NULL) {
		LM_INFO("stopping the engine: committing the store's pending changes\n");
		pushpark_engine_free(engine);
		engine = NULL;
	}
	pp_log_drain();
	_exit(0);
}

void pp_engine_main(void)
{
	struct pollfd pfd[3];
	long next_try = 0;
	int ev_fd = -1;

	pp_ipc_engine_init();
	if(pp_log_init(pp_host_log_level()) < 0)
		_exit(1);
	pp_stop_on_signals();
	for(;;) {
		pp_ipc_engine_alive();
		pp_host_loop_turn();
		pp_log_follow_level(pp_host_log_level());
		if(engine == NULL && pp_now_ms() >= next_try) {
			if(pp_engine_start() == 0 && pushpark_event_fd(engine, &ev_fd) == PUSHPARK_OK) {
				pp_ipc_set_ready(1);
			} else {
				next_try = pp_now_ms() + PP_RETRY_MS;
			}
		}
		pfd[0].fd = pp_log_fd();
		pfd[0].events = POLLIN;
		pfd[1].fd = engine ? pp_ipc_reader_fd() : -1;
		pfd[1].events = POLLIN;
		pfd[2].fd = engine ? ev_fd : -1;
		pfd[2].events = POLLIN;
		/* The timeout only paces the host's turn and start retries. */
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
			pp_ipc_drain(pp_serve, NULL);
		if(pfd[2].revents)
			pp_events_drain(engine);
	}
}

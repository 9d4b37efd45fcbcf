/*
 * The log bridge (see pp_log.h). The log callback runs on the engine's threads, where the
 * host's logging (per-process state, its config framework) is not safe. It only writes
 * the line to a pipe; the engine process's loop logs it. A line is written whole or
 * dropped (non-blocking, <= PIPE_BUF).
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "pp_host.h"
#include "pp_log.h"

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

void pp_log_drain(void)
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

void pp_log_follow_level(pushpark_log_level level)
{
	static pushpark_log_level current = PUSHPARK_LOG_OFF;

	if(level == current)
		return;
	if(pushpark_set_log_callback(pp_log_cb, NULL, level) == PUSHPARK_OK)
		current = level;
	else
		LM_ERR("cannot install the engine's log sink: %s\n", pushpark_last_error());
}

pushpark_log_level pp_log_level_of(int host_level)
{
	if(host_level >= L_DBG)
		return PUSHPARK_LOG_DEBUG;
	if(host_level >= L_INFO)
		return PUSHPARK_LOG_INFO;
	if(host_level >= L_WARN)
		return PUSHPARK_LOG_WARN;
	return PUSHPARK_LOG_ERROR;
}

int pp_log_fd(void)
{
	return log_rd;
}

int pp_log_init(pushpark_log_level level)
{
	int fds[2];

	if(pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		LM_ERR("pipe: %s\n", strerror(errno));
		return -1;
	}
	log_rd = fds[0];
	log_wr = fds[1];
	pp_log_follow_level(level);
	return 0;
}

/*
 * Worker <-> engine IPC (see pp_ipc.h for the design).
 */
#define _GNU_SOURCE /* pipe2, F_SETPIPE_SZ */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pp_host.h"
#include "pp_ipc.h"

/* A bigger pipe absorbs bursts (e.g. 8 workers x a burst of INVITEs and REGISTERs) while
 * the engine process is busy resuming calls; 1 MiB is Linux's default pipe-max-size. */
#define PP_PIPE_SIZE (1 << 20)

typedef struct pp_shared {
	volatile int ready; /* the engine is up and reading requests */
	/* A requester gave up waiting and the engine process has not come round its loop
	 * since: it is stuck (stopped, swapping, blocked), so further requests fail at once
	 * instead of each holding its SIP worker for the whole timeout. */
	volatile int stuck;
} pp_shared_t;

static pp_shared_t *pp_shared = NULL;
static int pipe_rd = -1;
static int pipe_wr = -1;

/* This process's reply socket, created on first use (after the fork). */
static int rpl_fd = -1;
static pid_t rpl_pid = 0;
static struct sockaddr_un rpl_addr;
static socklen_t rpl_addr_len = 0;
static uint32_t rpl_seq = 0;

/* Engine: unbound socket for sending replies. */
static int eng_fd = -1;
/* Set in the engine process: it must never wait for its own answer. */
static int is_engine = 0;

int pp_ipc_init(void)
{
	int fds[2];

	pp_shared = shm_malloc(sizeof(*pp_shared));
	if(pp_shared == NULL) {
		LM_ERR("out of shared memory\n");
		return -1;
	}
	memset(pp_shared, 0, sizeof(*pp_shared));
	if(pipe2(fds, O_CLOEXEC) < 0) {
		LM_ERR("pipe: %s\n", strerror(errno));
		return -1;
	}
	pipe_rd = fds[0];
	pipe_wr = fds[1];
	if(fcntl(pipe_wr, F_SETPIPE_SZ, PP_PIPE_SIZE) < 0)
		LM_WARN("cannot grow the request pipe to %d bytes: %s\n", PP_PIPE_SIZE,
				strerror(errno));
	if(fcntl(pipe_wr, F_SETFL, O_NONBLOCK) < 0
			|| fcntl(pipe_rd, F_SETFL, O_NONBLOCK) < 0) {
		LM_ERR("fcntl: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

void pp_ipc_close_reader(void)
{
	if(pipe_rd >= 0) {
		close(pipe_rd);
		pipe_rd = -1;
	}
}

void pp_req_init(pp_req_t *r, int op)
{
	memset(&r->h, 0, sizeof(r->h));
	r->h.op = (uint8_t)op;
	r->h.size = sizeof(r->h);
}

int pp_req_add(pp_req_t *r, const char *s, int len)
{
	char *p;

	if(s == NULL || len < 0)
		len = 0;
	if(r->h.nstrs >= PP_MAX_STRS || r->h.size + len + 1 > PP_REQ_MAX)
		return -1;
	p = (char *)r + r->h.size;
	if(len > 0)
		memcpy(p, s, len);
	p[len] = '\0';
	r->h.slen[r->h.nstrs++] = (uint16_t)len;
	r->h.size += len + 1;
	return 0;
}

const char *pp_req_str(const pp_req_t *r, int i)
{
	const char *p = (const char *)r + sizeof(r->h);
	int k;

	if(i >= r->h.nstrs)
		return "";
	for(k = 0; k < i; k++)
		p += r->h.slen[k] + 1;
	return p;
}

static int pp_write(pp_req_t *r)
{
	ssize_t n;

	if(pp_shared == NULL || !pp_shared->ready) {
		LM_DBG("engine not running\n");
		return -1;
	}
	do {
		n = write(pipe_wr, r, r->h.size);
	} while(n < 0 && errno == EINTR);
	if(n != (ssize_t)r->h.size) {
		/* EAGAIN: the pipe is full; a request <= PIPE_BUF is never written in part. */
		LM_WARN("engine queue full or gone (op %d): %s\n", r->h.op,
				n < 0 ? strerror(errno) : "short write");
		return -1;
	}
	return 0;
}

int pp_send(pp_req_t *r)
{
	r->h.reply_len = 0;
	return pp_write(r);
}

void pp_tell(int op, uint64_t host_ref, unsigned int status)
{
	pp_req_t r;

	pp_req_init(&r, op);
	r.h.host_ref = host_ref;
	r.h.status = (uint16_t)status;
	/* A full queue is logged by pp_send(); at shutdown the engine is gone already. */
	if(pp_send(&r) < 0)
		LM_DBG("engine not told that call %llx %s\n", (unsigned long long)host_ref,
				op == PP_OP_CANCEL ? "was cancelled" : "ended");
}

static int pp_reply_socket(void)
{
	struct sockaddr_un a;

	if(rpl_fd >= 0 && rpl_pid == getpid())
		return 0;
	if(rpl_fd >= 0)
		close(rpl_fd); /* inherited from the parent: not ours */
	rpl_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if(rpl_fd < 0) {
		LM_ERR("socket: %s\n", strerror(errno));
		return -1;
	}
	/* Autobind: the kernel picks a unique abstract address. */
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if(bind(rpl_fd, (struct sockaddr *)&a, sizeof(sa_family_t)) < 0) {
		LM_ERR("bind: %s\n", strerror(errno));
		goto error;
	}
	rpl_addr_len = sizeof(rpl_addr);
	if(getsockname(rpl_fd, (struct sockaddr *)&rpl_addr, &rpl_addr_len) < 0
			|| rpl_addr_len <= sizeof(sa_family_t)
			|| rpl_addr_len - sizeof(sa_family_t) > sizeof(((pp_req_hdr_t *)0)->reply_addr)) {
		LM_ERR("unexpected reply socket address\n");
		goto error;
	}
	rpl_pid = getpid();
	return 0;
error:
	close(rpl_fd);
	rpl_fd = -1;
	return -1;
}

long pp_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Stops waiting for the reply to seq. After shutdown(SHUT_RD) no reply can be queued
 * any more (the engine's send fails and it undoes the request), so what is queued now is
 * all that will ever come: the awaited reply (0, *rpl filled) or none (-1). The socket
 * is closed; the next call binds a new one. */
static int pp_give_up(uint32_t seq, pp_rpl_t *rpl)
{
	pp_rpl_t late;
	ssize_t n;
	int ret = -1;

	shutdown(rpl_fd, SHUT_RD);
	for(;;) {
		n = recv(rpl_fd, &late, sizeof(late), 0);
		if(n < 0 && errno == EINTR)
			continue;
		if(n != sizeof(late))
			break;
		if(late.seq == seq) {
			*rpl = late;
			ret = 0;
		} else if(late.json) {
			shm_free(late.json);
		}
	}
	close(rpl_fd);
	rpl_fd = -1;
	return ret;
}

int pp_call(pp_req_t *r, int timeout_ms, pp_rpl_t *rpl)
{
	struct pollfd pfd;
	ssize_t n;
	int left;

	if(is_engine) {
		LM_ERR("request %d from the engine process itself (e.g. pushpark_park() in the"
			   " resume route)\n", r->h.op);
		return -1;
	}
	if(pp_shared && __atomic_load_n(&pp_shared->stuck, __ATOMIC_RELAXED)) {
		LM_WARN("engine stuck (an earlier request got no answer): request %d refused at"
				" once\n",
				r->h.op);
		return -1;
	}
	if(pp_reply_socket() < 0)
		return -1;
	r->h.seq = ++rpl_seq;
	r->h.deadline = pp_now_ms() + timeout_ms;
	r->h.reply_len = (uint8_t)(rpl_addr_len - sizeof(sa_family_t));
	memcpy(r->h.reply_addr, rpl_addr.sun_path, r->h.reply_len);
	if(pp_write(r) < 0)
		return -1;
	/* Only this request's reply can arrive: a request given up on took its socket along
	 * (pp_give_up). The seq check guards against a recycled socket address. */
	for(;;) {
		n = recv(rpl_fd, rpl, sizeof(*rpl), 0);
		if(n == sizeof(*rpl) && rpl->seq == r->h.seq)
			return 0;
		if(n < 0 && errno != EAGAIN && errno != EINTR) {
			LM_ERR("recv: %s\n", strerror(errno));
			break;
		}
		left = (int)(r->h.deadline - pp_now_ms());
		if(left <= 0)
			break;
		pfd.fd = rpl_fd;
		pfd.events = POLLIN;
		poll(&pfd, 1, left);
	}
	if(pp_give_up(r->h.seq, rpl) == 0)
		return 0;
	LM_WARN("no answer from the engine within %d ms (op %d)\n", timeout_ms, r->h.op);
	__atomic_store_n(&pp_shared->stuck, 1, __ATOMIC_RELAXED);
	return -1;
}

void pp_ipc_engine_init(void)
{
	is_engine = 1;
}

void pp_ipc_engine_alive(void)
{
	if(pp_shared && pp_shared->stuck)
		__atomic_store_n(&pp_shared->stuck, 0, __ATOMIC_RELAXED);
}

void pp_ipc_set_ready(int ready)
{
	if(pp_shared)
		pp_shared->ready = ready;
}

int pp_ipc_reader_fd(void)
{
	return pipe_rd;
}

int pp_ipc_drain(void (*fn)(void *ctx, const pp_req_t *r), void *ctx)
{
	/* Static: a request may straddle two reads; its head waits here for its tail. */
	static char buf[64 * 1024];
	static size_t have = 0;
	pp_req_t req;
	size_t off, sz;
	ssize_t n;

	for(;;) {
		n = read(pipe_rd, buf + have, sizeof(buf) - have);
		if(n < 0 && errno == EINTR)
			continue;
		if(n < 0 && errno == EAGAIN)
			return 0;
		if(n <= 0) {
			LM_ERR("request pipe: %s\n", n < 0 ? strerror(errno) : "closed");
			return -1;
		}
		have += n;
		off = 0;
		while(have - off >= sizeof(uint16_t)) {
			memcpy(&req.h.size, buf + off, sizeof(uint16_t));
			sz = req.h.size;
			if(sz < sizeof(pp_req_hdr_t) || sz > PP_REQ_MAX) {
				LM_CRIT("corrupt request stream (size %zu)\n", sz);
				have = 0;
				return -1;
			}
			if(have - off < sz)
				break;
			memcpy(&req, buf + off, sz);
			off += sz;
			fn(ctx, &req);
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
}

int pp_ipc_expired(const pp_req_t *r)
{
	return r->h.reply_len > 0 && pp_now_ms() >= r->h.deadline;
}

int pp_ipc_reply(const pp_req_t *r, const pp_rpl_t *rpl)
{
	struct sockaddr_un a;
	pp_rpl_t out = *rpl;

	if(r->h.reply_len == 0)
		return 0;
	if(eng_fd < 0) {
		eng_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if(eng_fd < 0) {
			LM_ERR("socket: %s\n", strerror(errno));
			goto drop;
		}
	}
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	memcpy(a.sun_path, r->h.reply_addr, r->h.reply_len);
	out.seq = r->h.seq;
	if(sendto(eng_fd, &out, sizeof(out), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a,
			   sizeof(sa_family_t) + r->h.reply_len) == sizeof(out))
		return 0;
	/* The requester gave up (its socket is shut or closed, see pp_give_up): nobody else
	 * will take the reply or free the listing. */
	LM_DBG("reply to op %d not delivered: %s\n", r->h.op, strerror(errno));
drop:
	if(out.json)
		shm_free(out.json);
	return -1;
}

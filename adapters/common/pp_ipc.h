/*
 * Worker <-> engine-process IPC of a pushpark module (host-independent, see pp_host.h).
 *
 * Requests go to the engine process over ONE pipe created before the host forks: every
 * process holds the write end, only the engine process reads. A request is at most
 * PIPE_BUF bytes, so each write is atomic (requests of different processes never
 * interleave) and, on the non-blocking pipe, either fits whole or fails at once with
 * EAGAIN ("queue full"). Replies, when a request needs one, come back on a datagram
 * socket owned by the requesting process (one request in flight per process).
 *
 * A requester waits for its reply only so long. Both sides must agree on whether the
 * request was served, without a further message that a full queue could lose: the
 * engine skips a request whose requester's deadline has passed, and a requester that
 * gives up first shuts its socket for reading, so a reply sent after that fails and the
 * engine undoes what it did (see pp_call, pp_ipc_reply).
 */
#ifndef PP_IPC_H
#define PP_IPC_H

#include <limits.h>
#include <stdint.h>

enum pp_op {
	PP_OP_PARK = 1,     /* -> pushpark_park; replied */
	PP_OP_REGISTER,     /* -> pushpark_register_path (aor, contact, instance, Call-ID,
	                       Path; cseq); not replied */
	PP_OP_REMOVE_ALL,   /* REGISTER "Contact: *", expires 0: drop the AOR's devices */
	PP_OP_CANCEL,       /* caller CANCELled a parked call; not replied */
	PP_OP_ENDED,        /* the transaction of a (possibly resumed) call is gone */
	PP_OP_STATS,        /* RPC listings: replied with JSON in shared memory */
	PP_OP_PARKED,       /* a page: offset, limit */
	PP_OP_DEVICES,      /* a page of the AOR's: offset, limit */
	PP_OP_FORK,         /* -> pushpark_fork; replied */
	PP_OP_COMPLETED     /* a parked or forked call got its final reply (status); not
	                       replied */
};

/* FORK: call_id, aor, caller uri, caller name, then (uri, instance) per push-capable
 * contact of the destination set, as many as fit in PP_REQ_MAX. */
#define PP_FORK_MAX_CONTACTS 14
#define PP_MAX_STRS (4 + 2 * PP_FORK_MAX_CONTACTS)
#define PP_REQ_MAX PIPE_BUF

typedef struct pp_req_hdr {
	uint16_t size;      /* whole request, header included */
	uint8_t op;
	uint8_t nstrs;
	uint32_t seq;
	int64_t deadline;   /* replied requests: when the requester stops waiting (pp_now_ms) */
	uint64_t host_ref;
	uint32_t timeout_ms;
	uint32_t expires;
	uint32_t host_data; /* PARK, FORK: the adapter's; the engine carries it with the call,
	                       back on resume/reject (pp_host.h) */
	uint32_t cseq;      /* REGISTER: its CSeq number */
	uint32_t ringing;   /* FORK: bit i set when contact i rings now (not pushed) */
	uint16_t status;    /* COMPLETED: the call's final reply */
	uint32_t offset;    /* PARKED, DEVICES: the page asked for */
	uint32_t limit;
	uint8_t reply_len;  /* length of reply_addr (0: no reply wanted) */
	char reply_addr[15];
	uint16_t slen[PP_MAX_STRS]; /* strings follow the header, each NUL-terminated */
} pp_req_hdr_t;

typedef struct pp_req {
	pp_req_hdr_t h;
	char data[PP_REQ_MAX - sizeof(pp_req_hdr_t)];
} pp_req_t;

typedef struct pp_rpl {
	uint32_t seq;
	int32_t result;     /* pushpark_result */
	uint64_t park_id;
	char *json;         /* listings: shm string the receiver frees (shm_free) */
} pp_rpl_t;

/* mod_init: creates the request pipe and the shared engine state. */
int pp_ipc_init(void);
/* Every process but the engine's: drops the read end so only the engine holds it. */
void pp_ipc_close_reader(void);

/* Building a request. pp_req_add appends len bytes of s (NULL: "") as the next string;
 * -1 when the request would exceed PP_REQ_MAX. */
void pp_req_init(pp_req_t *r, int op);
int pp_req_add(pp_req_t *r, const char *s, int len);
/* The i-th string of a received request (NUL-terminated), or "" when absent. */
const char *pp_req_str(const pp_req_t *r, int i);

/* Fire and forget. 0 queued; -1 the engine is not running or the queue is full. */
int pp_send(pp_req_t *r);
/* Tells the engine what became of a call: PP_OP_CANCEL, PP_OP_COMPLETED (with its final
 * status) or PP_OP_ENDED. Fire and forget. */
void pp_tell(int op, uint64_t host_ref, unsigned int status);
/* Milliseconds on the monotonic clock. */
long pp_now_ms(void);
/* Request/response, waiting at most timeout_ms. 0 with *rpl filled; -1 engine not
 * running, queue full or no answer in time (the engine then leaves the request undone),
 * or at once while the engine is stuck: an earlier request got no answer and the engine
 * process has not come round its loop since. */
int pp_call(pp_req_t *r, int timeout_ms, pp_rpl_t *rpl);

/* Engine side. */
void pp_ipc_engine_init(void);
void pp_ipc_set_ready(int ready);
/* Each turn of the engine process's loop: it is not stuck (see pp_call). */
void pp_ipc_engine_alive(void);
int pp_ipc_reader_fd(void);
/* Reads what is queued and calls fn(ctx, r) for each complete request. -1 on a read
 * error. */
int pp_ipc_drain(void (*fn)(void *ctx, const pp_req_t *r), void *ctx);
/* 1 when the request's sender has stopped waiting for the reply: skip it. */
int pp_ipc_expired(const pp_req_t *r);
/* Sends the reply, if one is wanted. -1 when the requester had given up: the caller
 * undoes the request's effect (a listing in rpl->json is freed here). */
int pp_ipc_reply(const pp_req_t *r, const pp_rpl_t *rpl);

#endif

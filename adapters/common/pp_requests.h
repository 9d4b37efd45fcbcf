/*
 * The engine process serving the SIP workers' requests (pp_ipc.h): park, fork, register,
 * cancel, the ends of calls, listings.
 */
#ifndef PP_REQUESTS_H
#define PP_REQUESTS_H

#include "pp_host.h"
#include "pp_ipc.h"

/* The host_data the engine carries for a call and gives back on its events: the worker's
 * (pp_req_hdr_t host_data, the adapter's meaning) in the low 32 bits, and PP_DATA_FORKED
 * for a call of pushpark_fork (its REJECT is the host's fork_reject). */
#define PP_DATA_FORKED ((uint64_t)1 << 32)
#define PP_DATA_HOST(d) ((uint32_t)((d)&0xffffffffu))

void pp_request_serve(pushpark_engine *engine, const pp_req_t *r);

#endif

/*
 * The engine process serving the SIP workers' requests (pp_ipc.h): park, fork, register,
 * cancel, the ends of calls, listings.
 */
#ifndef PP_REQUESTS_H
#define PP_REQUESTS_H

#include "pp_host.h"
#include "pp_ipc.h"

void pp_request_serve(pushpark_engine *engine, const pp_host_t *host, const pp_req_t *r);

#endif

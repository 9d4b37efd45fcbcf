/*
 * The engine process turning the engine's events into host actions (pp_host_t).
 */
#ifndef PP_EVENTS_H
#define PP_EVENTS_H

#include "pp_host.h"

/* Handles at most a batch of queued events (each can run the host's resume route, and
 * SIP workers wait meanwhile for answers to their requests). */
void pp_events_drain(pushpark_engine *engine, const pp_host_t *host);

#endif

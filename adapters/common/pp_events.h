/*
 * The engine process turning the engine's events into host actions (pp_host.h).
 */
#ifndef PP_EVENTS_H
#define PP_EVENTS_H

#include "pp_host.h"

/* Handles at most a batch of queued events (each can run the host's resume route, and
 * SIP workers wait meanwhile for answers to their requests). */
void pp_events_drain(pushpark_engine *engine);

/* Replies code/reason to a REJECT event's call (pp_host_reject, or pp_host_fork_reject
 * for a forked call): what that returns. */
int pp_reject_call(const pushpark_event *ev, int code, const char *reason);

#endif

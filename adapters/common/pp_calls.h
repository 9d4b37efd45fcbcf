/*
 * The calls the engine process tracks, by host_ref: what the host needs back when the
 * engine resumes or rejects one (host_data), whether it was forked, whether it got its
 * provisional reply. Parked and forked calls are in the table until the engine resumes,
 * rejects or forgets them.
 */
#ifndef PP_CALLS_H
#define PP_CALLS_H

#include <stdint.h>

typedef struct pp_call {
	uint64_t ref;
	uint32_t host_data;
	int rang;        /* provisional reply sent */
	int fork;        /* pushpark_fork(): may ring elsewhere meanwhile */
	struct pp_call *next;
} pp_call_t;

void pp_call_add(uint64_t ref, uint32_t host_data, int fork);
/* The call, still in the table, or NULL. */
pp_call_t *pp_call_find(uint64_t ref);
/* Unlinks and returns the call (the caller frees it), or NULL. */
pp_call_t *pp_call_take(uint64_t ref);
/* Unlinks and returns some call (the caller frees it), NULL when there is none. */
pp_call_t *pp_call_take_any(void);
/* Drops the call; returns its host_data (0: unknown). */
uint32_t pp_call_forget(uint64_t ref);

#endif

/*
 * The engine process's call table (see pp_calls.h). In malloc memory, not the host's
 * per-process pool: up to park.max_total entries would not fit it.
 */
#include <stdlib.h>

#include "pp_calls.h"
#include "pp_host.h"

#define PP_CALLS_SIZE 4096
static pp_call_t *calls[PP_CALLS_SIZE];

static unsigned int pp_call_slot(uint64_t ref)
{
	return (unsigned int)((ref ^ (ref >> 32)) * 2654435761u) % PP_CALLS_SIZE;
}

void pp_call_add(uint64_t ref, uint32_t host_data, int fork)
{
	unsigned int i = pp_call_slot(ref);
	pp_call_t *c = malloc(sizeof(*c));

	if(c == NULL) {
		LM_ERR("out of memory: call %llx untracked\n", (unsigned long long)ref);
		return;
	}
	c->ref = ref;
	c->host_data = host_data;
	c->rang = 0;
	c->fork = fork;
	c->next = calls[i];
	calls[i] = c;
}

static pp_call_t **pp_call_link(uint64_t ref)
{
	pp_call_t **p;

	for(p = &calls[pp_call_slot(ref)]; *p; p = &(*p)->next)
		if((*p)->ref == ref)
			return p;
	return p;
}

pp_call_t *pp_call_find(uint64_t ref)
{
	return *pp_call_link(ref);
}

pp_call_t *pp_call_take(uint64_t ref)
{
	pp_call_t **p = pp_call_link(ref);
	pp_call_t *c = *p;

	if(c)
		*p = c->next;
	return c;
}

pp_call_t *pp_call_take_any(void)
{
	pp_call_t *c;
	int i;

	for(i = 0; i < PP_CALLS_SIZE; i++)
		if((c = calls[i]) != NULL) {
			calls[i] = c->next;
			return c;
		}
	return NULL;
}

uint32_t pp_call_forget(uint64_t ref)
{
	pp_call_t *c = pp_call_take(ref);
	uint32_t data = 0;

	if(c) {
		data = c->host_data;
		free(c);
	}
	return data;
}


/*
 * What the module takes from the engine's configuration file, in the host's main process
 * before it forks: every process inherits it.
 */
#ifndef PP_CONFIG_H
#define PP_CONFIG_H

#include <stdint.h>

#include "pushpark.h"

/* The engine's Contact rules (providers, team, topics): plain memory, read by every SIP
 * worker. */
extern pushpark_contact_rules *pp_contact_rules;
/* The engine's park timeout (park.timeout_ms or its default), in ms. */
extern uint32_t pp_config_park_timeout_ms;
/* 1 when the engine is a node of a cluster (pushpark_config_clustered). */
extern int pp_config_clustered;

/* Reads the file, checks the files it names (key, certificate, CA, store directory) so
 * that what would fail every push stops the start-up with one line naming the cause,
 * makes the Contact rules and notes the park timeout and clustering. 0, or -1 logged. */
int pp_config_load(const char *path);

/* The whole file, NUL-terminated, in malloc memory (caller frees); NULL logged. */
char *pp_read_file(const char *path);

/* pushpark.h: a Contact over 4096 bytes is invalid. */
#define PP_CONTACT_MAX 4097

/* 1 when the Contact URI (len bytes) has push parameters the engine pushes to, as
 * pushpark_contact_check says; 0 for an ordinary contact and for one the engine would
 * not push (a provider it does not serve, malformed parameters): that one just rings. */
int pp_contact_pushable(const char *uri, int len);

#endif

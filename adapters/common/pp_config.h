/*
 * The engine's configuration file, as the module reads it.
 */
#ifndef PP_CONFIG_H
#define PP_CONFIG_H

/* The whole file, NUL-terminated, in malloc memory (caller frees); NULL logged. */
char *pp_read_file(const char *path);

#endif

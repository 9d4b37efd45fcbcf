/*
 * The registrar side: handing accepted REGISTER bindings to the engine, and RFC 8599's
 * pn-provider check (555) and Feature-Caps.
 */
#ifndef PP_REGISTER_H
#define PP_REGISTER_H

#include "core/parser/msg_parser.h"

int pp_register_init(void);
/* pushpark_check_provider(): 1 accepted (Feature-Caps added when the Contact has push
 * parameters), -1 unsupported pn-provider (555 sent), -2 error. */
int pp_check_provider(sip_msg_t *msg);
/* pushpark_register(): 1 handed to the engine, -1 not (engine down, queue full). */
int pp_register(sip_msg_t *msg);

#endif

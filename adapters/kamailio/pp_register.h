/*
 * The registrar side: checking a REGISTER's Contacts before save (RFC 8599: 555, 400,
 * Feature-Caps), and handing accepted bindings to the engine.
 */
#ifndef PP_REGISTER_H
#define PP_REGISTER_H

#include "core/parser/msg_parser.h"

/* mod_init: binds sl. */
int pp_register_init(void);
/* pushpark_check_provider(): checks every Contact as the engine will take it. 1 accepted
 * (Feature-Caps added when a Contact has push parameters), -1 refused (555 unsupported
 * pn-provider, 400 malformed push parameters: sent), -2 error. */
int pp_check_provider(sip_msg_t *msg);
/* pushpark_register(): 1 handed to the engine, -1 not (engine down, queue full). */
int pp_register(sip_msg_t *msg);

#endif

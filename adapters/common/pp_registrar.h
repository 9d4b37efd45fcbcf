/*
 * The registrar side of a pushpark module (host-independent, see pp_host.h): checking a
 * REGISTER's Contacts before save (RFC 8599: 555 for a push service pushpark does not
 * push to, 400 for malformed push parameters, Feature-Caps on the 2xx), and handing
 * accepted bindings to the engine. The host's half (binding its reply API, parsing the
 * Contact headers, walking them) is its pp_host_sip.h.
 */
#ifndef PP_REGISTRAR_H
#define PP_REGISTRAR_H

#include "pp_host_sip.h"

/* mod_init: binds the host's stateless reply API. 0, or -1 logged. */
int pp_registrar_init(void);
/* pushpark_check_provider(): checks every Contact as the engine will take it. 1 accepted
 * (Feature-Caps added when a Contact has push parameters), -1 refused (555 unsupported
 * pn-provider, 400 malformed push parameters: sent), -2 error. */
int pp_check_provider(struct sip_msg *msg);
/* pushpark_register(): 1 every binding handed to the engine, -1 not (engine down, queue
 * full). */
int pp_register(struct sip_msg *msg);

/* The host's half, in its adapter: binds the stateless reply API of its module
 * PP_HOST_REPLY_MODULE (pp_host_sip.h): 0 or -1; parses every Contact header of the
 * request (0, or -1 logged); sends a stateless reply (0 or -1). */
int pp_host_reply_bind(void);
int pp_host_parse_contacts(struct sip_msg *msg);
int pp_host_reply(struct sip_msg *msg, int code, str *reason);
/* The host and port this node gives for the socket the request came in on (its
 * advertised ones when set), for the Path other nodes reach it by: 0, or -1. */
int pp_host_socket_name(struct sip_msg *msg, str *host, str *port);

#endif

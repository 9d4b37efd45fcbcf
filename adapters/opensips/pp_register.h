/*
 * REGISTER handling: Contact checks (400/555) and Feature-Caps before save
 * (pushpark_check_provider), bindings to the engine after it (pushpark_register).
 */
#ifndef PP_REGISTER_H
#define PP_REGISTER_H

#include "parser/msg_parser.h"

int pp_register_init(void);
/* 1; -1 refused (answered: 400 or 555); -2 error. */
int pp_check_provider(struct sip_msg *msg);
/* 1 every binding queued to the engine; -1 otherwise. */
int pp_register(struct sip_msg *msg);

#endif

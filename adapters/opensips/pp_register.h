/*
 * The registrar side's OpenSIPS glue; pushpark_check_provider() and pushpark_register()
 * are ../common/pp_registrar.h's.
 */
#ifndef PP_REGISTER_H
#define PP_REGISTER_H

#include "pp_registrar.h"

/* mod_init: binds the signaling module. 0, or -1 logged. */
int pp_register_init(void);

#endif

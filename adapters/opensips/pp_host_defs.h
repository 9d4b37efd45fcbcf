/*
 * OpenSIPS's side of the host interface of ../common (see pp_host.h there): its logging
 * macros and shared memory.
 */
#ifndef PP_HOST_DEFS_H
#define PP_HOST_DEFS_H

#include "dprint.h"
#include "mem/shm_mem.h"
#include "statistics.h"

#endif

/*
 * RPC commands (kamcmd / jsonrpcs): pushpark.stats, pushpark.parked, pushpark.devices.
 */
#ifndef PP_RPC_H
#define PP_RPC_H

#include "core/rpc.h"

extern rpc_export_t pp_rpc_cmds[];

#endif

/*
 * RPC commands. They run in Kamailio's RPC processes (ctl, jsonrpcs), not in the engine
 * process: each asks the engine process for the library's JSON document and turns it
 * into RPC values, so kamcmd prints it and jsonrpcs returns it as JSON.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/dprint.h"
#include "core/mem/shm_mem.h"
#include "core/utils/srjson.h"
#include "pushpark.h"
#include "pp_ipc.h"
#include "pp_rpc.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

/* Listings can be long; still an RPC must not hang when the engine is stuck. */
#define PP_RPC_TIMEOUT_MS 3000

/* where: 0 top level (rpc->add), 1 struct member (struct_add), 2 array item (array_add). */
static void pp_rpc_value(rpc_t *rpc, void *ctx, void *h, int where, const char *name,
		srjson_t *v)
{
	char num[32];
	void *sub = NULL;
	srjson_t *c;
	const char *type;

	switch(v->type) {
		case srjson_Object:
		case srjson_Array:
			type = v->type == srjson_Object ? "{" : "[";
			if(where == 0)
				rpc->add(ctx, (char *)type, &sub);
			else if(where == 1)
				rpc->struct_add(h, (char *)type, name, &sub);
			else
				rpc->array_add(h, (char *)type, &sub);
			if(sub == NULL)
				return;
			for(c = v->child; c; c = c->next)
				pp_rpc_value(rpc, ctx, sub, v->type == srjson_Object ? 1 : 2, c->string, c);
			return;
		case srjson_Number:
			/* Integers as integers when they fit, else as text (u64 ids, counters). */
			if(v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 2147483647.0) {
				int i = (int)v->valuedouble;
				if(where == 0)
					rpc->add(ctx, "d", i);
				else if(where == 1)
					rpc->struct_add(h, "d", name, i);
				else
					rpc->array_add(h, "d", i);
				return;
			}
			if(v->valuedouble == floor(v->valuedouble))
				snprintf(num, sizeof(num), "%.0f", v->valuedouble);
			else
				snprintf(num, sizeof(num), "%g", v->valuedouble);
			break;
		case srjson_String:
			break;
		case srjson_True:
		case srjson_False:
			snprintf(num, sizeof(num), "%s", v->type == srjson_True ? "true" : "false");
			break;
		default:
			snprintf(num, sizeof(num), "null");
	}
	{
		char *s = v->type == srjson_String ? v->valuestring : num;
		if(where == 0)
			rpc->add(ctx, "s", s);
		else if(where == 1)
			rpc->struct_add(h, "s", name, s);
		else
			rpc->array_add(h, "s", s);
	}
}

static void pp_rpc_listing(rpc_t *rpc, void *ctx, int op, str *aor)
{
	pp_req_t r;
	pp_rpl_t rpl;
	srjson_doc_t doc;
	srjson_t *root, *c;

	pp_req_init(&r, op);
	if(aor && pp_req_add(&r, aor) < 0) {
		rpc->fault(ctx, 400, "AOR too long");
		return;
	}
	if(pp_call(&r, PP_RPC_TIMEOUT_MS, &rpl) < 0) {
		rpc->fault(ctx, 503, "pushpark engine not running or not answering");
		return;
	}
	if(rpl.result != PUSHPARK_OK || rpl.json == NULL) {
		rpc->fault(ctx, 500, "pushpark: %s", pushpark_result_message(rpl.result));
		if(rpl.json)
			shm_free(rpl.json);
		return;
	}
	srjson_InitDoc(&doc, NULL);
	root = srjson_Parse(&doc, rpl.json);
	shm_free(rpl.json);
	if(root == NULL) {
		rpc->fault(ctx, 500, "pushpark: unreadable answer from the engine");
		srjson_DestroyDoc(&doc);
		return;
	}
	doc.root = root;
	if(root->type == srjson_Array)
		for(c = root->child; c; c = c->next)
			pp_rpc_value(rpc, ctx, NULL, 0, NULL, c);
	else
		pp_rpc_value(rpc, ctx, NULL, 0, NULL, root);
	srjson_DestroyDoc(&doc);
}

static const char *pp_rpc_stats_doc[] = {"Engine statistics: parked calls, pushes, latency.", 0};
static void pp_rpc_stats(rpc_t *rpc, void *ctx)
{
	pp_rpc_listing(rpc, ctx, PP_OP_STATS, NULL);
}

static const char *pp_rpc_parked_doc[] = {
		"The calls parked now: park_id, host_ref, call_id, aor, age_ms, state.", 0};
static void pp_rpc_parked(rpc_t *rpc, void *ctx)
{
	pp_rpc_listing(rpc, ctx, PP_OP_PARKED, NULL);
}

static const char *pp_rpc_devices_doc[] = {
		"The push devices of an AOR (tokens truncated). Parameter: the AOR.", 0};
static void pp_rpc_devices(rpc_t *rpc, void *ctx)
{
	char buf[PP_AOR_MAX];
	str aor = STR_NULL, norm;

	if(rpc->scan(ctx, "S", &aor) < 1) {
		rpc->fault(ctx, 400, "AOR expected, e.g. sip:alice@example.com");
		return;
	}
	/* The same normal form as REGISTER and INVITE use (see pp_aor). */
	pp_rpc_listing(rpc, ctx, PP_OP_DEVICES, pp_aor(&aor, buf, &norm) == 0 ? &norm : &aor);
}

rpc_export_t pp_rpc_cmds[] = {
		{"pushpark.stats", pp_rpc_stats, pp_rpc_stats_doc, 0},
		{"pushpark.parked", pp_rpc_parked, pp_rpc_parked_doc, RET_ARRAY},
		{"pushpark.devices", pp_rpc_devices, pp_rpc_devices_doc, RET_ARRAY},
		{0, 0, 0, 0}};

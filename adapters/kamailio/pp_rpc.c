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

/* Where a value goes: the reply itself, a member of a struct or an item of an array. */
enum pp_rpc_where { PP_RPC_TOP, PP_RPC_MEMBER, PP_RPC_ITEM };

/* rpc->add, struct_add or array_add by where; v is the one argument fmt takes. */
#define PP_RPC_PUT(rpc, ctx, h, where, name, fmt, v) \
	((where) == PP_RPC_TOP ? (rpc)->add((ctx), (fmt), (v)) \
	: (where) == PP_RPC_MEMBER ? (rpc)->struct_add((h), (fmt), (name), (v)) \
	: (rpc)->array_add((h), (fmt), (v)))

static void pp_rpc_value(rpc_t *rpc, void *ctx, void *h, enum pp_rpc_where where,
		const char *name, srjson_t *v)
{
	char num[32];
	char *s = num;
	void *sub = NULL;
	srjson_t *c;

	switch(v->type) {
		case srjson_Object:
		case srjson_Array:
			PP_RPC_PUT(rpc, ctx, h, where, name, v->type == srjson_Object ? "{" : "[", &sub);
			if(sub == NULL)
				return;
			for(c = v->child; c; c = c->next)
				pp_rpc_value(rpc, ctx, sub,
						v->type == srjson_Object ? PP_RPC_MEMBER : PP_RPC_ITEM, c->string, c);
			return;
		case srjson_Number:
			/* Integers as integers when they fit, else as text (u64 ids, counters). */
			if(v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 2147483647.0) {
				PP_RPC_PUT(rpc, ctx, h, where, name, "d", (int)v->valuedouble);
				return;
			}
			if(v->valuedouble == floor(v->valuedouble))
				snprintf(num, sizeof(num), "%.0f", v->valuedouble);
			else
				snprintf(num, sizeof(num), "%g", v->valuedouble);
			break;
		case srjson_String:
			s = v->valuestring;
			break;
		case srjson_True:
			s = "true";
			break;
		case srjson_False:
			s = "false";
			break;
		default:
			s = "null";
	}
	PP_RPC_PUT(rpc, ctx, h, where, name, "s", s);
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
			pp_rpc_value(rpc, ctx, NULL, PP_RPC_TOP, NULL, c);
	else
		pp_rpc_value(rpc, ctx, NULL, PP_RPC_TOP, NULL, root);
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

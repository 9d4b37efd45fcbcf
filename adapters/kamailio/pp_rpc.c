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
/* Items per page of a listing when the command names no limit. */
#define PP_RPC_PAGE 100

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

/* Asks the engine for r's JSON document and replies with it. */
static void pp_rpc_listing(rpc_t *rpc, void *ctx, pp_req_t *r)
{
	pp_rpl_t rpl;
	srjson_doc_t doc;
	srjson_t *root;

	if(pp_call(r, PP_RPC_TIMEOUT_MS, &rpl) < 0) {
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
	pp_rpc_value(rpc, ctx, NULL, PP_RPC_TOP, NULL, root);
	srjson_DestroyDoc(&doc);
}

/* Sets r's page from the command's offset and limit (-1: none given); -1 after a fault. */
static int pp_rpc_page(rpc_t *rpc, void *ctx, pp_req_t *r, int offset, int limit)
{
	if(limit == -1)
		limit = PP_RPC_PAGE;
	if(offset < 0 || limit < 1 || limit > PUSHPARK_PAGE_MAX) {
		rpc->fault(ctx, 400, "offset must be 0 or more, limit from 1 to %d", PUSHPARK_PAGE_MAX);
		return -1;
	}
	r->h.offset = (uint32_t)offset;
	r->h.limit = (uint32_t)limit;
	return 0;
}

static const char *pp_rpc_stats_doc[] = {"Engine statistics: parked calls, pushes, latency.", 0};
static void pp_rpc_stats(rpc_t *rpc, void *ctx)
{
	pp_req_t r;

	pp_req_init(&r, PP_OP_STATS);
	pp_rpc_listing(rpc, ctx, &r);
}

static const char *pp_rpc_parked_doc[] = {
		"The calls parked now, a page: total, offset, items (park_id, host_ref, call_id, "
		"aor, age_ms, state). Parameters: [offset [limit]] (0, 100; limit at most 1000).",
		0};
static void pp_rpc_parked(rpc_t *rpc, void *ctx)
{
	pp_req_t r;
	int offset = 0, limit = -1;

	if(rpc->scan(ctx, "*dd", &offset, &limit) < 0)
		return;
	pp_req_init(&r, PP_OP_PARKED);
	if(pp_rpc_page(rpc, ctx, &r, offset, limit) == 0)
		pp_rpc_listing(rpc, ctx, &r);
}

static const char *pp_rpc_devices_doc[] = {
		"The push devices of an AOR (tokens truncated), a page: total, offset, items. "
		"Parameters: the AOR [offset [limit]] (0, 100; limit at most 1000).",
		0};
static void pp_rpc_devices(rpc_t *rpc, void *ctx)
{
	char buf[PP_AOR_MAX];
	str aor = STR_NULL, norm;
	pp_req_t r;
	int offset = 0, limit = -1;

	if(rpc->scan(ctx, "S*dd", &aor, &offset, &limit) < 1) {
		rpc->fault(ctx, 400, "AOR expected, e.g. sip:alice@example.com");
		return;
	}
	pp_req_init(&r, PP_OP_DEVICES);
	if(pp_rpc_page(rpc, ctx, &r, offset, limit) < 0)
		return;
	/* The same normal form as REGISTER and INVITE use (see pp_aor). */
	if(pp_req_add_str(&r, pp_aor(&aor, buf, &norm) == 0 ? &norm : &aor) < 0) {
		rpc->fault(ctx, 400, "AOR too long");
		return;
	}
	pp_rpc_listing(rpc, ctx, &r);
}

rpc_export_t pp_rpc_cmds[] = {
		{"pushpark.stats", pp_rpc_stats, pp_rpc_stats_doc, 0},
		{"pushpark.parked", pp_rpc_parked, pp_rpc_parked_doc, 0},
		{"pushpark.devices", pp_rpc_devices, pp_rpc_devices_doc, 0},
		{0, 0, 0, 0}};

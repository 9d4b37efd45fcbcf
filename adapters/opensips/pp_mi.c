/*
 * MI commands. They run in the process serving the MI request (mi_fifo, mi_http...), not
 * in the engine process: each asks the engine process for the library's JSON document and
 * turns it into MI items, so opensips-cli prints it and every MI transport returns it as
 * JSON.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dprint.h"
#include "mem/shm_mem.h"
#include "mi/mi.h"
#include "pushpark.h"
#include "pp_ipc.h"
#include "pp_mi.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

/* Listings can be long; still an MI command must not hang when the engine is stuck. */
#define PP_MI_TIMEOUT_MS 3000
/* Items per page of a listing when the command names no limit. */
#define PP_MI_PAGE 100
/* Integers beyond this lose digits as JSON numbers (doubles): they go out as text. */
#define PP_MI_MAX_EXACT 9007199254740992.0

/* Adds v to the object or array to (name NULL in an array). */
static int pp_mi_value(mi_item_t *to, const char *name, const cJSON *v)
{
	char num[32];
	char *n = (char *)name;
	int nl = name ? strlen(name) : 0;
	mi_item_t *sub;
	const cJSON *c;

	switch(v->type & 0xff) {
		case cJSON_Object:
		case cJSON_Array:
			sub = (v->type & cJSON_Object) ? add_mi_object(to, n, nl) : add_mi_array(to, n, nl);
			if(sub == NULL)
				return -1;
			for(c = v->child; c; c = c->next)
				if(pp_mi_value(sub, (v->type & cJSON_Object) ? c->string : NULL, c) < 0)
					return -1;
			return 0;
		case cJSON_Number:
			if(v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) < PP_MI_MAX_EXACT)
				return add_mi_number(to, n, nl, v->valuedouble);
			snprintf(num, sizeof(num), "%.0f", v->valuedouble);
			return add_mi_string(to, n, nl, num, strlen(num));
		case cJSON_String:
			return add_mi_string(to, n, nl, v->valuestring, strlen(v->valuestring));
		case cJSON_True:
		case cJSON_False:
			return add_mi_bool(to, n, nl, (v->type & cJSON_True) != 0);
		default:
			return add_mi_null(to, n, nl);
	}
}

/* Asks the engine for r's JSON document and answers with it. */
static mi_response_t *pp_mi_listing(pp_req_t *r)
{
	pp_rpl_t rpl;
	cJSON *doc;
	const cJSON *c;
	mi_response_t *resp;
	mi_item_t *top;

	if(pp_call(r, PP_MI_TIMEOUT_MS, &rpl) < 0)
		return init_mi_error(503, MI_SSTR("pushpark engine not running or not answering"));
	if(rpl.result != PUSHPARK_OK || rpl.json == NULL) {
		if(rpl.json)
			shm_free(rpl.json);
		return init_mi_error_extra(500, MI_SSTR("pushpark"),
				pushpark_result_message(rpl.result),
				strlen(pushpark_result_message(rpl.result)));
	}
	doc = cJSON_Parse(rpl.json);
	shm_free(rpl.json);
	if(doc == NULL)
		return init_mi_error(500, MI_SSTR("pushpark: unreadable answer from the engine"));
	resp = (doc->type & cJSON_Array) ? init_mi_result_array(&top) : init_mi_result_object(&top);
	if(resp != NULL) {
		for(c = doc->child; c; c = c->next)
			if(pp_mi_value(top, (doc->type & cJSON_Object) ? c->string : NULL, c) < 0) {
				free_mi_response(resp);
				resp = init_mi_error(500, MI_SSTR("pushpark: out of memory"));
				break;
			}
	}
	cJSON_Delete(doc);
	return resp;
}

/* Sets r's page from the command's optional offset and limit; an error response, or NULL. */
static mi_response_t *pp_mi_page(const mi_params_t *params, pp_req_t *r)
{
	int offset = 0, limit = PP_MI_PAGE;

	/* -2: present but not a number (mi/item.c's MI_PARAM_ERR_BAD_TYPE; -1: absent). */
	if(try_get_mi_int_param(params, "offset", &offset) == -2
			|| try_get_mi_int_param(params, "limit", &limit) == -2)
		return init_mi_param_error();
	if(offset < 0 || limit < 1 || limit > PUSHPARK_PAGE_MAX)
		return init_mi_error(400, MI_SSTR("offset must be 0 or more, limit from 1 to 1000"));
	r->h.offset = (uint32_t)offset;
	r->h.limit = (uint32_t)limit;
	return NULL;
}

static mi_response_t *pp_mi_stats(const mi_params_t *params, struct mi_handler *async_hdl)
{
	pp_req_t r;

	pp_req_init(&r, PP_OP_STATS);
	return pp_mi_listing(&r);
}

static mi_response_t *pp_mi_parked(const mi_params_t *params, struct mi_handler *async_hdl)
{
	pp_req_t r;
	mi_response_t *err;

	pp_req_init(&r, PP_OP_PARKED);
	if((err = pp_mi_page(params, &r)) != NULL)
		return err;
	return pp_mi_listing(&r);
}

static mi_response_t *pp_mi_devices(const mi_params_t *params, struct mi_handler *async_hdl)
{
	char buf[PP_AOR_MAX];
	str aor, norm;
	pp_req_t r;
	mi_response_t *err;

	if(get_mi_string_param(params, "aor", &aor.s, &aor.len) < 0)
		return init_mi_param_error();
	pp_req_init(&r, PP_OP_DEVICES);
	if((err = pp_mi_page(params, &r)) != NULL)
		return err;
	/* The same normal form as REGISTER and INVITE use (see pp_aor). */
	if(pp_req_add_str(&r, pp_aor(&aor, buf, &norm) == 0 ? &norm : &aor) < 0)
		return init_mi_error(400, MI_SSTR("AOR too long"));
	return pp_mi_listing(&r);
}

const mi_export_t pp_mi_cmds[] = {
		{"pushpark_stats", "engine statistics: parked calls, pushes, latency", 0, 0,
				{{pp_mi_stats, {0}}, {EMPTY_MI_RECIPE}}},
		{"pushpark_parked",
				"the calls parked now, a page: total, offset, items (park_id, host_ref, "
				"call_id, aor, age_ms, state); params: [offset limit] (0, 100; limit at "
				"most 1000)",
				0, 0,
				{{pp_mi_parked, {0}}, {pp_mi_parked, {"offset", 0}},
						{pp_mi_parked, {"offset", "limit", 0}}, {EMPTY_MI_RECIPE}}},
		{"pushpark_devices",
				"the push devices of an AOR (tokens truncated), a page: total, offset, "
				"items; params: aor [offset limit]",
				0, 0,
				{{pp_mi_devices, {"aor", 0}}, {pp_mi_devices, {"aor", "offset", 0}},
						{pp_mi_devices, {"aor", "offset", "limit", 0}}, {EMPTY_MI_RECIPE}}},
		{EMPTY_MI_EXPORT}};

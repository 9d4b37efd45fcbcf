/*
 * Kamailio's side of ../common's SIP code (pp_registrar, pp_sip; see pp_host.h there):
 * its parsers, reply lumps and statistics, and the REGISTER glue in pp_register.c.
 */
#ifndef PP_HOST_SIP_H
#define PP_HOST_SIP_H

#include "core/data_lump_rpl.h"
#include "core/parser/contact/parse_contact.h"
#include "core/parser/msg_parser.h"
#include "core/parser/parse_cseq.h"
#include "core/parser/parse_expires.h"
#include "core/parser/parse_from.h"
#include "core/parser/parse_to.h"
#include "core/parser/parse_uri.h"
#include "core/str.h"
#include "core/ut.h"
#include "pp_stats.h"

/* The module whose stateless replies pp_host_reply sends. */
#define PP_HOST_REPLY_MODULE "sl"

/* Each parsed Contact of the request (after pp_host_parse_contacts). */
#define PP_FOREACH_CONTACT(msg, h, c)                                   \
	for(h = (msg)->contact; h; h = h->next)                             \
		if(h->type == HDR_CONTACT_T && h->parsed)                       \
			for(c = ((contact_body_t *)h->parsed)->contacts; c; c = c->next)

#endif

/*
 * OpenSIPS's side of ../common's SIP code (pp_registrar, pp_sip; see pp_host.h there):
 * its parsers, reply lumps and statistics, and the REGISTER glue in pp_register.c.
 */
#ifndef PP_HOST_SIP_H
#define PP_HOST_SIP_H

#include "data_lump_rpl.h"
#include "parser/contact/parse_contact.h"
#include "parser/msg_parser.h"
#include "parser/parse_cseq.h"
#include "parser/parse_expires.h"
#include "parser/parse_from.h"
#include "parser/parse_to.h"
#include "parser/parse_uri.h"
#include "str.h"
#include "ut.h"
#include "pp_stats.h"

/* The module whose stateless replies pp_host_reply sends. */
#define PP_HOST_REPLY_MODULE "signaling"

/* Each parsed Contact of the request (after pp_host_parse_contacts): OpenSIPS links the
 * Contact headers as siblings. */
#define PP_FOREACH_CONTACT(msg, h, c)                                   \
	for(h = (msg)->contact; h; h = h->sibling)                          \
		if(h->parsed)                                                   \
			for(c = ((contact_body_t *)h->parsed)->contacts; c; c = c->next)

#endif

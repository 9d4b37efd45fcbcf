/*
 * OpenSIPS's half of the registrar side (see pp_host_sip.h; the rest is
 * ../common/pp_registrar.c): the signaling module for the replies, OpenSIPS's Contact
 * parsing.
 */
#include "dprint.h"
#include "modules/signaling/signaling.h"
#include "pp_host_sip.h"
#include "pp_registrar.h"
#include "socket_info.h"

static struct sig_binds sigb;

int pp_host_reply_bind(void)
{
	return load_sig_api(&sigb);
}

int pp_host_parse_contacts(struct sip_msg *msg)
{
	struct hdr_field *h;

	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_ERR("bad headers\n");
		return -1;
	}
	for(h = msg->contact; h; h = h->sibling)
		if(parse_contact(h) < 0) {
			LM_ERR("bad Contact header\n");
			return -1;
		}
	return 0;
}

int pp_host_reply(struct sip_msg *msg, int code, str *reason)
{
	return sigb.reply(msg, code, reason, NULL);
}

int pp_host_socket_name(struct sip_msg *msg, str *host, str *port)
{
	const struct socket_info *si = msg->rcv.bind_address;

	if(si == NULL)
		return -1;
	*host = si->adv_name_str.len ? si->adv_name_str : si->address_str;
	*port = si->adv_port_str.len ? si->adv_port_str : si->port_no_str;
	return 0;
}

/*
 * Kamailio's half of the registrar side (see pp_host_sip.h; the rest is
 * ../common/pp_registrar.c): sl for the replies, Kamailio's Contact parsing.
 */
#include "core/dprint.h"
#include "modules/sl/sl.h"
#include "pp_host_sip.h"
#include "pp_registrar.h"

static sl_api_t slb;

int pp_host_reply_bind(void)
{
	return sl_load_api(&slb);
}

int pp_host_parse_contacts(struct sip_msg *msg)
{
	if(parse_contact_headers(msg) < 0) {
		LM_ERR("bad Contact header\n");
		return -1;
	}
	return 0;
}

int pp_host_reply(struct sip_msg *msg, int code, str *reason)
{
	return slb.freply(msg, code, reason);
}

int pp_host_socket_name(struct sip_msg *msg, str *host, str *port)
{
	struct socket_info *si = msg->rcv.bind_address;

	if(si == NULL)
		return -1;
	*host = si->useinfo.name.len ? si->useinfo.name : si->address_str;
	*port = si->useinfo.port_no_str.len ? si->useinfo.port_no_str : si->port_no_str;
	return 0;
}

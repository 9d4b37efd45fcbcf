/*
 * Destination sets from usrloc (see pp_dset.h).
 */
#include <string.h>
#include <time.h>

#include "dprint.h"
#include "dset.h"
#include "ip_addr.h"
#include "net/net_tcp.h"
#include "parser/parse_rr.h"
#include "parser/parse_uri.h"
#include "pp_dset.h"
#include "pp_sip.h"
#include "pushpark_mod.h"

static usrloc_api_t ul;
static udomain_t *location;

int pp_dset_init(void)
{
	if(load_ul_api(&ul) < 0 || ul.register_udomain(pp_location_table, &location) < 0) {
		LM_ERR("the usrloc module and its table \"%s\" are required\n", pp_location_table);
		return -1;
	}
	return 0;
}

int pp_ul_aor(const char *aor, str *key)
{
	struct sip_uri u;

	if(parse_uri((char *)aor, strlen(aor), &u) < 0 || u.user.len == 0)
		return -1;
	key->s = u.user.s;
	key->len = ul.use_domain ? (int)(u.host.s + u.host.len - u.user.s) : u.user.len;
	return 0;
}

struct urecord *pp_ul_get(str *key)
{
	struct urecord *rec;

	ul.lock_udomain(location, key);
	if(ul.get_urecord(location, key, &rec) == 0)
		return rec;
	ul.unlock_udomain(location, key);
	return NULL;
}

void pp_ul_release(struct urecord *rec, str *key)
{
	ul.release_urecord(rec, 0);
	ul.unlock_udomain(location, key);
}

int pp_contact_branch(ucontact_t *c, struct msg_branch *b)
{
	memset(b, 0, sizeof(*b));
	b->uri = c->c;
	b->dst_uri = c->received;
	b->path = c->path;
	b->q = c->q;
	b->force_send_socket = c->sock;
	b->bflags = c->cflags;
	if(c->path.len > 0 && get_path_dst_uri(&c->path, &b->dst_uri) < 0) {
		LM_ERR("bad Path of %.*s\n", c->c.len, c->c.s);
		return -1;
	}
	return 0;
}

int pp_dset_put(struct sip_msg *msg, struct msg_branch *b, int first)
{
	if(!first)
		return append_msg_branch(b);
	if(set_ruri(msg, &b->uri) < 0 || set_dst_uri(msg, &b->dst_uri) < 0
			|| set_path_vector(msg, &b->path) < 0)
		return -1;
	set_ruri_q(msg, b->q);
	setb0flags(msg, b->bflags);
	msg->force_send_socket = b->force_send_socket;
	return 0;
}

int pp_live_connection(struct msg_branch *b)
{
	str *target = b->dst_uri.len > 0 ? &b->dst_uri : &b->uri;
	struct tcp_connection *c = NULL;
	struct sip_uri u;
	struct ip_addr *ip;
	int proto, port, live;

	if(parse_uri(target->s, target->len, &u) < 0)
		return 0;
	proto = u.proto != PROTO_NONE ? u.proto : (u.type == SIPS_URI_T ? PROTO_TLS : PROTO_UDP);
	if(proto != PROTO_TCP && proto != PROTO_TLS && proto != PROTO_WS && proto != PROTO_WSS)
		return 0;
	if((ip = str2ip(&u.host)) == NULL && (ip = str2ip6(&u.host)) == NULL)
		return 0;
	port = u.port_no ? u.port_no : (proto == PROTO_TLS ? SIPS_PORT : SIP_PORT);
	if(tcp_conn_get(0, ip, port, proto, NULL, &c, NULL, NULL) <= 0 || c == NULL)
		return 0;
	live = c->state == S_CONN_OK;
	tcp_conn_release(c, 0);
	return live;
}

int pp_contact_instance(struct urecord *rec, str *uri, str *instance)
{
	ucontact_t *c;

	*instance = (str){"", 0};
	for(c = rec ? rec->contacts : NULL; c; c = c->next)
		if(c->c.len == uri->len && memcmp(c->c.s, uri->s, uri->len) == 0) {
			*instance = c->instance;
			return 1;
		}
	return 0;
}

ucontact_t *pp_device_contact(struct urecord *rec, const char *device)
{
	time_t now = time(NULL);
	ucontact_t *c;

	for(c = rec->contacts; c; c = c->next)
		if(VALID_CONTACT(c, now) && pp_instance_is(&c->instance, device))
			return c;
	return NULL;
}

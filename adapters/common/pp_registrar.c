/*
 * The registrar side (see pp_registrar.h), on the parsers both hosts inherited from SER.
 */
#include <stdio.h>
#include <string.h>

#include "pp_config.h"
#include "pp_ipc.h"
#include "pp_registrar.h"
#include "pp_sip.h"

/* Registrar default when neither the Contact nor the request says. */
#define PP_DEFAULT_EXPIRES 3600
/* An address in the Path: a host name or IPv6 address, and its brackets. */
#define PP_HOST_MAX 256
#define PP_PATH_MAX 640
/* pushpark.h: a reason phrase is at most 200 bytes. */
#define PP_REASON_MAX 200

/* A reason phrase from the engine's detail: printable ASCII, at most 200 bytes. */
static void pp_reason_phrase(const char *detail, char *buf)
{
	int i;

	for(i = 0; detail[i] && i < PP_REASON_MAX; i++)
		buf[i] = (detail[i] >= 0x20 && detail[i] < 0x7f) ? detail[i] : ' ';
	buf[i] = '\0';
	if(i == 0)
		strcpy(buf, "Bad Push Parameters");
}

/* Replies code/reason to the REGISTER: -1 for the script (the REGISTER is answered). */
static int pp_refuse(struct sip_msg *msg, int code, char *reason)
{
	str r;

	r.s = reason;
	r.len = strlen(reason);
	if(pp_host_reply(msg, code, &r) < 0)
		LM_ERR("cannot send %d\n", code);
	update_stat(pp_st_register_refused, 1);
	return -1;
}

int pp_registrar_init(void)
{
	if(pp_host_reply_bind() < 0) {
		LM_ERR("the %s module is required\n", PP_HOST_REPLY_MODULE);
		return -1;
	}
	return 0;
}

int pp_check_provider(struct sip_msg *msg)
{
	char hdr[128], reason[PP_REASON_MAX + 1], uri[PP_CONTACT_MAX];
	struct hdr_field *h;
	contact_t *c;
	const char *prov, *caps = NULL;
	pushpark_result rc;
	int n;

	if(pp_host_parse_contacts(msg) < 0)
		return -2;
	PP_FOREACH_CONTACT(msg, h, c)
	{
		if(c->uri.len >= PP_CONTACT_MAX)
			return pp_refuse(msg, 400, "Contact Too Long");
		memcpy(uri, c->uri.s, c->uri.len);
		uri[c->uri.len] = '\0';
		prov = NULL;
		rc = pushpark_contact_check(pp_contact_rules, uri, &prov);
		if(rc == PUSHPARK_ERR_UNSUPPORTED) {
			LM_INFO("REGISTER refused: 555 (%s)\n", pushpark_last_error());
			return pp_refuse(msg, 555, "Push Notification Service Not Supported");
		}
		if(rc != PUSHPARK_OK) {
			pp_reason_phrase(pushpark_last_error(), reason);
			LM_INFO("REGISTER with bad push parameters: 400 %s\n", reason);
			return pp_refuse(msg, 400, reason);
		}
		if(prov)
			caps = prov;
	}
	if(caps) {
		/* RFC 8599 4.1.2: the 2xx to a REGISTER with push parameters names the PNS. */
		n = snprintf(hdr, sizeof(hdr), "Feature-Caps: +sip.pns=\"%s\"\r\n", caps);
		if(n < 0 || n >= (int)sizeof(hdr)
				|| add_lump_rpl(msg, hdr, n, LUMP_RPL_HDR) == NULL) {
			LM_ERR("cannot add Feature-Caps\n");
			return -2;
		}
	}
	return 1;
}

static uint32_t pp_expires(struct sip_msg *msg, contact_t *c)
{
	unsigned int e;

	if(c->expires && c->expires->body.len > 0
			&& str2int(&c->expires->body, &e) == 0)
		return e;
	if(msg->expires && (msg->expires->parsed || parse_expires(msg->expires) == 0)
			&& ((exp_body_t *)msg->expires->parsed)->valid)
		return ((exp_body_t *)msg->expires->parsed)->val;
	return PP_DEFAULT_EXPIRES;
}

/* Transports in a SIP URI; "" for UDP, the default. */
static const char *pp_transport(int proto)
{
	switch(proto) {
		case PROTO_TCP:
			return "tcp";
		case PROTO_TLS:
			return "tls";
		case PROTO_SCTP:
			return "sctp";
		case PROTO_WS:
			return "ws";
		case PROTO_WSS:
			return "wss";
		default:
			return "";
	}
}

/* "[" and "]" around an IPv6 address not already in brackets. */
#define PP_V6_OPEN(h) ((h)[0] != '[' && strchr((h), ':') ? "[" : "")
#define PP_V6_CLOSE(h) ((h)[0] != '[' && strchr((h), ':') ? "]" : "")

/* The REGISTER's own Path headers (an edge proxy's), joined: 0, 1 when it has none, -1
 * when they do not fit. */
static int pp_register_path(struct sip_msg *msg, char *buf, int size)
{
	struct hdr_field *h;
	int n = 0;

	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	for(h = msg->path; h; h = h->next) {
		if(h->type != HDR_PATH_T)
			continue;
		if(n + (n ? 1 : 0) + h->body.len >= size)
			return -1;
		if(n)
			buf[n++] = ',';
		memcpy(buf + n, h->body.s, h->body.len);
		n += h->body.len;
	}
	buf[n] = '\0';
	return n ? 0 : 1;
}

/* The Path (RFC 3327) through which a cluster's other nodes reach the device. The
 * REGISTER's own when an edge proxy added one (the edge holds the connection); else this
 * node's socket that the REGISTER came in on, with the REGISTER's source in the
 * `received` parameter that the path module of Kamailio and OpenSIPS (use_received)
 * turns into the next hop, as Kamailio's add_path_received() does: over a connection
 * the call goes over it, over UDP through the NAT binding the REGISTER came through
 * (an app behind NAT names in its Contact an address only its own network reaches).
 * 0, or -1 (no Path). */
static int pp_path(struct sip_msg *msg, char *buf, int size)
{
	char host[PP_HOST_MAX], src[PP_HOST_MAX];
	const char *tp = pp_transport(msg->rcv.proto);
	str h, port;
	int n;

	n = pp_register_path(msg, buf, size);
	if(n <= 0)
		return n;
	if(pp_host_socket_name(msg, &h, &port) < 0 || h.len >= PP_HOST_MAX)
		return -1;
	memcpy(host, h.s, h.len);
	host[h.len] = '\0';
	n = snprintf(buf, size, "<sip:%s%s%s:%.*s%s%s;lr", PP_V6_OPEN(host), host,
			PP_V6_CLOSE(host), port.len, port.s, *tp ? ";transport=" : "", tp);
	if(n > 0 && n < size) {
		snprintf(src, sizeof(src), "%s", ip_addr2a(&msg->rcv.src_ip));
		n += snprintf(buf + n, size - n, ";received=sip:%s%s%s:%u%s%s", PP_V6_OPEN(src),
				src, PP_V6_CLOSE(src), (unsigned)msg->rcv.src_port,
				*tp ? "%3Btransport%3D" : "", tp);
	}
	if(n > 0 && n < size)
		n += snprintf(buf + n, size - n, ">");
	return n > 0 && n < size ? 0 : -1;
}

int pp_register(struct sip_msg *msg)
{
	char aor_buf[PP_AOR_MAX];
	struct hdr_field *h;
	contact_t *c;
	pp_req_t r;
	char path_buf[PP_PATH_MAX];
	str aor, inst, path, none = {NULL, 0};
	unsigned int cseq;
	int sent = 0, failed = 0;

	if(msg->first_line.type != SIP_REQUEST || msg->REQ_METHOD != METHOD_REGISTER) {
		LM_ERR("pushpark_register() takes REGISTERs only\n");
		return -1;
	}
	if(parse_to_header(msg) < 0 || pp_aor(&get_to(msg)->uri, aor_buf, &aor) < 0) {
		LM_ERR("REGISTER without a usable To\n");
		return -1;
	}
	/* Call-ID and CSeq order a device's REGISTERs: an unREGISTER relayed by another
	 * worker may reach the engine before the REGISTER it follows. */
	if(parse_headers(msg, HDR_CALLID_F | HDR_CSEQ_F, 0) < 0 || msg->callid == NULL
			|| msg->cseq == NULL || str2int(&get_cseq(msg)->number, &cseq) < 0) {
		LM_ERR("REGISTER without Call-ID or CSeq\n");
		return -1;
	}
	if(pp_host_parse_contacts(msg) < 0)
		return -1;
	if(msg->contact && msg->contact->parsed
			&& ((contact_body_t *)msg->contact->parsed)->star) {
		/* RFC 3261 10.2.2 "Contact: *" (only valid with expires 0): every binding goes,
		 * the push devices too. */
		pp_req_init(&r, PP_OP_REMOVE_ALL);
		if(pp_req_add_str(&r, &aor) < 0 || pp_send(&r) < 0)
			return -1;
		update_stat(pp_st_registers, 1);
		return 1;
	}
	path.s = path_buf;
	/* Only other nodes follow it: no parsing for it on a node alone. */
	path.len = pp_config_clustered && pp_path(msg, path_buf, sizeof(path_buf)) == 0
					   ? strlen(path_buf)
					   : 0;
	PP_FOREACH_CONTACT(msg, h, c)
	{
		pp_req_init(&r, PP_OP_REGISTER);
		r.h.expires = pp_expires(msg, c);
		r.h.cseq = cseq;
		/* +sip.instance as it came: the engine takes quotes and <>. */
		inst = c->instance ? c->instance->body : none;
		if(pp_req_add_str(&r, &aor) < 0 || pp_req_add_str(&r, &c->uri) < 0
				|| pp_req_add_str(&r, &inst) < 0 || pp_req_add_str(&r, &msg->callid->body) < 0
				|| pp_req_add_str(&r, &path) < 0 || pp_send(&r) < 0)
			failed++;
		else
			sent++;
	}
	if(sent)
		update_stat(pp_st_registers, sent);
	if(failed) {
		LM_WARN("%d binding(s) of %.*s not handed to the engine\n", failed, aor.len, aor.s);
		return -1;
	}
	return 1;
}

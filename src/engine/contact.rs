//! RFC 8599 push parameters out of a REGISTER's Contact: `pn-provider`,
//! `pn-prid` and `pn-param`, plus `+sip.instance`. Hosts hand over either the
//! bare URI or the whole header value, so both are accepted; parameter names
//! are case-insensitive and values may be quoted or percent-encoded.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// `pn-provider=apns`: Apple's production environment.
    Apns,
    /// `pn-provider=apns.dev`: Apple's sandbox (development builds of the app).
    ApnsDev,
}

impl Provider {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::ApnsDev => "apns.dev",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Provider> {
        if s.eq_ignore_ascii_case("apns") {
            Some(Provider::Apns)
        } else if s.eq_ignore_ascii_case("apns.dev") {
            Some(Provider::ApnsDev)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushBinding {
    pub provider: Provider,
    /// Lower-case hex, whatever case the device used.
    pub token: String,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedContact {
    /// `None` when the contact has no APNs push parameters (an ordinary UA, or
    /// another push provider that is not ours to serve).
    pub push: Option<PushBinding>,
    /// `+sip.instance` without quotes and angle brackets.
    pub instance: Option<String>,
    /// The Contact is `*` (with expires 0: remove every binding of the AOR).
    pub wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactError(pub String);

impl fmt::Display for ContactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad Contact: {}", self.0)
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ContactError> {
    Err(ContactError(msg.into()))
}

/// `"<urn:uuid:x>"` → `urn:uuid:x`.
pub(crate) fn normalize_instance(raw: &str) -> Option<String> {
    let s = raw.trim().trim_matches('"').trim();
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The characters of `s` outside double-quoted strings, with their byte
/// offsets; the quotes themselves are left out. Inside quotes a backslash
/// escapes the next character (an RFC 3261 quoted-pair such as `\"`).
fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    s.char_indices().filter(move |&(_, c)| {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ => return !quoted,
        }
        false
    })
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in unquoted(s).filter(|&(_, c)| c == sep) {
        parts.push(&s[start..i]);
        start = i + sep.len_utf8();
    }
    parts.push(&s[start..]);
    parts
}

fn percent_decode(s: &str) -> Result<String, ContactError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: from_str_radix alone would take "+a" too.
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return bad(format!("bad percent-encoding in `{s}`")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).or_else(|_| bad(format!("`{s}` is not UTF-8 once decoded")))
}

/// The URI (inside `<>` when present) and the header parameters after it.
fn split_header(contact: &str) -> Result<(&str, &str), ContactError> {
    let s = contact.trim();
    // A quoted display name may itself contain '<'.
    match unquoted(s).find(|&(_, c)| c == '<') {
        Some((open, _)) => {
            let rest = &s[open + 1..];
            match rest.find('>') {
                Some(close) => Ok((rest[..close].trim(), &rest[close + 1..])),
                None => bad("`<` without `>`"),
            }
        }
        // Everything is inside the quotes: the display name never ends.
        None if s.starts_with('"') && unquoted(s).next().is_none() => {
            bad("a display name without `<URI>`")
        }
        None => Ok((s, "")),
    }
}

pub(crate) fn hex_token(raw: &str) -> Result<String, ContactError> {
    let t = raw.trim();
    if t.len() < 32 || t.len() > 200 || t.len() % 2 != 0 {
        return bad(format!(
            "pn-prid must be an even number (32 to 200) of hex digits, got {} characters",
            t.len()
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return bad("pn-prid must be hex digits (an APNs device token)");
    }
    Ok(t.to_ascii_lowercase())
}

/// `<TeamID>.<bundle id>.voip` → `<bundle id>.voip`.
fn voip_topic(param: &str) -> Result<String, ContactError> {
    let (team, topic) = match param.trim().split_once('.') {
        Some(parts) => parts,
        None => {
            return bad(format!(
                "pn-param `{param}` is not <TeamID>.<bundle id>.voip"
            ))
        }
    };
    if team.is_empty() || !team.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return bad(format!("pn-param `{param}`: `{team}` is not a Team ID"));
    }
    check_topic(topic).map_err(|e| ContactError(format!("pn-param `{param}`: {}", e.0)))?;
    Ok(topic.to_string())
}

/// A VoIP topic: `<bundle id>.voip` (the only topic Apple accepts VoIP pushes on).
pub(crate) fn check_topic(topic: &str) -> Result<(), ContactError> {
    let valid_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
    if !topic.bytes().all(valid_char) || topic.starts_with('.') || topic.contains("..") {
        return bad(format!("`{topic}` is not a bundle id"));
    }
    match topic.strip_suffix(".voip") {
        Some(bundle) if !bundle.is_empty() => Ok(()),
        _ => bad(format!(
            "topic `{topic}` is not a VoIP topic (<bundle id>.voip)"
        )),
    }
}

pub(crate) fn parse(contact: &str) -> Result<ParsedContact, ContactError> {
    if contact.trim() == "*" {
        return Ok(ParsedContact {
            push: None,
            instance: None,
            wildcard: true,
        });
    }
    if contact.trim().is_empty() {
        return bad("empty");
    }
    let (uri, header_params) = split_header(contact)?;
    let uri = unquoted(uri)
        .find(|&(_, c)| c == '?')
        .map_or(uri, |(i, _)| &uri[..i]);
    // URI parameters follow the host part; a user part may contain ';' too.
    // The user part ends at the first '@' (a quoted header parameter of a bare
    // URI may hold another).
    let host_start = unquoted(uri)
        .find(|&(_, c)| c == '@')
        .map_or(0, |(i, _)| i + 1);
    let uri_params = uri[host_start..].split_once(';').map_or("", |(_, p)| p);

    let (mut provider, mut prid, mut param, mut instance) = (None, None, None, None);
    let params = split_unquoted(uri_params, ';')
        .into_iter()
        .chain(split_unquoted(header_params, ';'));
    for p in params {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        let name = name.trim().to_ascii_lowercase();
        let slot = match name.as_str() {
            "pn-provider" => &mut provider,
            "pn-prid" => &mut prid,
            "pn-param" => &mut param,
            "+sip.instance" => &mut instance,
            _ => continue,
        };
        let value = percent_decode(value.trim().trim_matches('"'))?;
        match slot {
            Some(prev) if *prev != value => {
                return bad(format!("{name} appears twice with different values"))
            }
            _ => *slot = Some(value),
        }
    }

    let instance = instance.as_deref().and_then(normalize_instance);
    let push = match provider {
        None if prid.is_some() || param.is_some() => {
            return bad("pn-prid/pn-param without pn-provider")
        }
        None => None,
        Some(name) => match Provider::parse(&name) {
            None => {
                log::debug!("contact with push provider `{name}` is not ours to serve");
                None
            }
            Some(provider) => {
                let token = match prid {
                    Some(t) => hex_token(&t)?,
                    None => return bad("pn-provider=apns without pn-prid"),
                };
                let topic = match param {
                    Some(p) => voip_topic(&p)?,
                    None => return bad("pn-provider=apns without pn-param"),
                };
                Some(PushBinding {
                    provider,
                    token,
                    topic,
                })
            }
        },
    };
    Ok(ParsedContact {
        push,
        instance,
        wildcard: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00FA7B3c9e1d2f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345";

    fn push_of(contact: &str) -> PushBinding {
        parse(contact).unwrap().push.expect("push binding")
    }

    #[test]
    fn rfc8599_uri_params() {
        let b = push_of(&format!(
            "sip:alice@192.0.2.1:5061;transport=tls;pn-provider=apns;pn-prid={TOKEN};\
             pn-param=ABCD123456.com.example.phone.voip"
        ));
        assert_eq!(b.provider, Provider::Apns);
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        assert_eq!(b.topic, "com.example.phone.voip");
    }

    #[test]
    fn full_header_with_quotes_case_and_instance() {
        let c = parse(&format!(
            "\"Alice <iPhone>\" <sip:alice@[2001:db8::1]:5060;PN-Provider=APNS.dev;\
             Pn-Prid=\"{TOKEN}\";pn-param=\"ABCD123456.com.example.phone.voip\">;expires=600;\
             +sip.instance=\"<urn:uuid:0C67446E-F1A1-11E9-9F9A-3C0754ED15F0>\";reg-id=1"
        ))
        .unwrap();
        let b = c.push.unwrap();
        assert_eq!(b.provider, Provider::ApnsDev);
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        assert_eq!(
            c.instance.as_deref(),
            Some("urn:uuid:0C67446E-F1A1-11E9-9F9A-3C0754ED15F0")
        );
    }

    #[test]
    fn params_after_the_uri_and_percent_encoding() {
        let b = push_of(&format!(
            "<sip:bob@host>;pn-provider=apns;pn-prid={TOKEN};pn-param=TEAM1.org.x%2Dy.voip"
        ));
        assert_eq!(b.topic, "org.x-y.voip");
    }

    #[test]
    fn contacts_without_push_params_or_of_other_providers() {
        let c = parse("<sip:carol@198.51.100.7:5060;transport=udp>;expires=3600").unwrap();
        assert_eq!(c.push, None);
        assert!(!c.wildcard);
        let fcm = parse("sip:dave@h;pn-provider=fcm;pn-prid=abc;pn-param=proj").unwrap();
        assert_eq!(fcm.push, None);
        assert!(parse("*").unwrap().wildcard);
    }

    #[test]
    fn user_part_semicolons_are_not_params() {
        let c = parse("sip:+1555;phone-context=x;pn-provider=apns@host;transport=tcp").unwrap();
        assert_eq!(c.push, None);
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("<sip:a@h;pn-provider=apns", "`<` without `>`"),
            (
                "sip:a@h;pn-provider=apns;pn-param=T.b.voip",
                "without pn-prid",
            ),
            (
                &format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN}") as &str,
                "without pn-param",
            ),
            ("sip:a@h;pn-prid=00", "without pn-provider"),
            (
                "sip:a@h;pn-provider=apns;pn-prid=xyz;pn-param=T.b.voip",
                "32 to 200",
            ),
            (
                &format!(
                    "sip:a@h;pn-provider=apns;pn-prid={}zz;pn-param=T.b.voip",
                    &TOKEN[2..]
                ),
                "must be hex",
            ),
            (
                &format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.com.app"),
                "not a VoIP topic",
            ),
            (
                &format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=nodot"),
                "is not <TeamID>",
            ),
            (
                &format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.a b.voip"),
                "not a bundle id",
            ),
            (
                &format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.b%zz.voip"),
                "percent-encoding",
            ),
            (
                &format!("<sip:a@h;pn-provider=apns>;pn-provider=apns.dev;pn-prid={TOKEN}"),
                "appears twice",
            ),
        ];
        for (contact, expected) in cases {
            let e = parse(contact).unwrap_err().to_string();
            assert!(e.contains(expected), "{contact}: {e}");
        }
    }

    /// Found by props.rs: an escaped quote inside a quoted display name or
    /// parameter value used to end the quoting, so the push parameters after it
    /// were silently dropped and the device was never stored.
    #[test]
    fn escaped_quotes_do_not_end_a_quoted_string() {
        let b = push_of(&format!(
            "<sip:a@h>;x=\"\\\"\";pn-provider=apns;pn-prid={TOKEN};pn-param=T.b.voip"
        ));
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        let b = push_of(&format!(
            "\"a\\\" <x> \" <sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.b.voip>"
        ));
        assert_eq!(b.topic, "b.voip");
        let c = parse("<sip:a@h>;a=\"\\\"\";+sip.instance=\"<urn:uuid:1>\"").unwrap();
        assert_eq!(c.instance.as_deref(), Some("urn:uuid:1"));
    }

    /// Found by props.rs: `%+a` was decoded as a newline.
    #[test]
    fn a_percent_sign_needs_two_hex_digits() {
        let e = parse("<sip:a@h>;+sip.instance=\"<urn:%+a>\"").unwrap_err();
        assert!(e.0.contains("percent-encoding"), "{e}");
    }

    /// Found by props.rs: the user part ended at the last '@' and the URI at the
    /// first '?', so in a bare Contact a quoted header parameter holding either
    /// hid the push parameters.
    #[test]
    fn an_at_sign_in_a_quoted_parameter_is_not_the_user_part() {
        let b = push_of(&format!(
            "sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.b.voip;x=\"a@b?\""
        ));
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        assert!(parse("\"Alice <sip:a@h>").is_err());
    }

    #[test]
    fn instance_normalization() {
        assert_eq!(
            normalize_instance("\"<urn:uuid:1>\"").as_deref(),
            Some("urn:uuid:1")
        );
        assert_eq!(
            normalize_instance("urn:uuid:1").as_deref(),
            Some("urn:uuid:1")
        );
        assert_eq!(normalize_instance(" \"<>\" "), None);
    }
}

#[cfg(test)]
mod props;

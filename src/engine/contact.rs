//! RFC 8599 push parameters out of a REGISTER's Contact: `pn-provider`,
//! `pn-prid` and `pn-param`, plus `+sip.instance`. Hosts hand over either the
//! bare URI or the whole header value (one or several Contacts), so both are
//! accepted; parameter names are case-insensitive and values may be quoted or
//! percent-encoded. Linphone's dialect (`pn-prid=<remote>:remote&<voip>:voip`,
//! `pn-param=<TeamID>.<bundle>.remote&voip`) gives its VoIP token and topic.
//! Error messages become SIP reason phrases: short, one line, no whole token.

use std::fmt;

use super::config::{valid_fcm_project, AuthConfig, EngineConfig, FcmConfig};
use crate::fcm::valid_registration_token;

/// The longest Contact header value taken.
pub(crate) const MAX_CONTACT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// `pn-provider=apns`: Apple's production environment.
    Apns,
    /// `pn-provider=apns.dev`: Apple's sandbox (development builds of the app).
    ApnsDev,
    /// `pn-provider=fcm`: Firebase Cloud Messaging (Android).
    Fcm,
}

impl Provider {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::ApnsDev => "apns.dev",
            Provider::Fcm => "fcm",
        }
    }

    /// The configuration section that serves it.
    fn section(self) -> &'static str {
        match self {
            Provider::Apns | Provider::ApnsDev => "apns",
            Provider::Fcm => "fcm",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Provider> {
        if s.eq_ignore_ascii_case("apns") {
            Some(Provider::Apns)
        } else if s.eq_ignore_ascii_case("apns.dev") {
            Some(Provider::ApnsDev)
        } else if s.eq_ignore_ascii_case("fcm") {
            Some(Provider::Fcm)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushBinding {
    pub provider: Provider,
    /// APNs: lower-case hex, whatever case the device used. FCM: the registration
    /// token as sent (it is case-sensitive).
    pub token: String,
    /// The Team ID of pn-param; empty for FCM.
    pub team: String,
    /// Where the push goes within the service: the APNs topic, or the FCM project.
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedContact {
    /// `None` when the contact has no push parameters (an ordinary UA).
    pub push: Option<PushBinding>,
    /// `+sip.instance`, normalised (see `normalize_instance`).
    pub instance: Option<String>,
    /// The Contact is `*` (with expires 0: remove every binding of the AOR).
    pub wildcard: bool,
}

/// Why a Contact is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactError {
    /// Malformed push parameters, or ones the configuration refuses (SIP 400).
    Invalid(String),
    /// A push service pushpark does not push to (RFC 8599: SIP 555).
    Unsupported(String),
}

impl ContactError {
    pub fn message(&self) -> &str {
        match self {
            ContactError::Invalid(m) | ContactError::Unsupported(m) => m,
        }
    }
}

impl fmt::Display for ContactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContactError::Invalid(m) => write!(f, "bad Contact: {m}"),
            ContactError::Unsupported(m) => f.write_str(m),
        }
    }
}

fn bad<T>(msg: impl Into<String>) -> Result<T, ContactError> {
    Err(ContactError::Invalid(msg.into()))
}

/// An excerpt of input for an error message: too short to be a whole token
/// (they have at least 32 digits), one line.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 16;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

/// `"<urn:uuid:0C67-AB>"` → `urn:uuid:0c67-ab`: no quotes, `<>` or blanks,
/// and URNs compared as URNs (RFC 8141: the `urn:` scheme and namespace in
/// any case; a UUID is hex in any case), so a device keeps one key however
/// it spells its instance.
pub(crate) fn normalize_instance(raw: &str) -> Option<String> {
    let s = raw.trim().trim_matches('"').trim();
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s)
        .trim();
    if s.is_empty() {
        return None;
    }
    let urn = s.get(..4).filter(|p| p.eq_ignore_ascii_case("urn:"));
    let Some(rest) = urn.map(|_| &s[4..]) else {
        return Some(s.to_string());
    };
    Some(match rest.split_once(':') {
        Some((nid, nss)) if nid.eq_ignore_ascii_case("uuid") => {
            format!("urn:uuid:{}", nss.to_ascii_lowercase())
        }
        Some((nid, nss)) => format!("urn:{}:{nss}", nid.to_ascii_lowercase()),
        None => format!("urn:{}", rest.to_ascii_lowercase()),
    })
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

/// The Contacts of a header value: split on commas outside quotes and `<>`
/// (RFC 3261 puts a URI holding a comma in `<>`).
fn split_contacts(s: &str) -> Vec<&str> {
    let (mut parts, mut start, mut in_angle) = (Vec::new(), 0, false);
    for (i, c) in unquoted(s) {
        match c {
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
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
                None => return bad(format!("bad percent-encoding in `{}`", shown(s))),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).or_else(|_| bad(format!("`{}` is not UTF-8 once decoded", shown(s))))
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

/// The URI of one Contact: inside its `<>` when it has them.
pub(crate) fn uri_of(contact: &str) -> &str {
    split_header(contact).map_or(contact.trim(), |(uri, _)| uri)
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

/// The token to push: pn-prid itself, or Linphone's `<token>:voip` or
/// `<token>:remote&<token>:voip` (the VoIP one; the remote one is not ours).
fn voip_token(prid: &str) -> Result<String, ContactError> {
    let parts: Vec<&str> = prid.split('&').collect();
    let mut voip = None;
    for part in &parts {
        match part.rsplit_once(':') {
            None if parts.len() == 1 => return hex_token(part),
            None => return bad("pn-prid: a token in a list has no :voip or :remote"),
            Some((token, kind)) if kind.trim().eq_ignore_ascii_case("voip") => {
                if voip.replace(token).is_some() {
                    return bad("pn-prid has two VoIP tokens");
                }
            }
            Some((_, kind)) if kind.trim().eq_ignore_ascii_case("remote") => {}
            Some((_, kind)) => {
                return bad(format!("pn-prid: unknown token type `{}`", shown(kind)))
            }
        }
    }
    match voip {
        Some(token) => hex_token(token),
        None => bad("pn-prid has no VoIP token"),
    }
}

/// `<TeamID>.<bundle id>.voip`, or Linphone's `<TeamID>.<bundle id>.remote&voip`
/// → (Team ID, `<bundle id>.voip`).
fn team_and_topic(param: &str) -> Result<(String, String), ContactError> {
    let Some((team, rest)) = param.trim().split_once('.') else {
        return bad("pn-param is not <TeamID>.<bundle id>.voip");
    };
    if team.is_empty() || !team.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return bad(format!("pn-param: `{}` is not a Team ID", shown(team)));
    }
    let (bundle, services) = rest.rsplit_once('.').unwrap_or(("", rest));
    let services: Vec<&str> = services.split('&').collect();
    if !services.contains(&"voip") {
        return bad("pn-param: not a VoIP topic (<bundle id>.voip)");
    }
    if !services
        .iter()
        .all(|s| s.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        return bad("pn-param: bad service list after the bundle id");
    }
    let topic = format!("{bundle}.voip");
    check_topic(&topic).map_err(|e| ContactError::Invalid(format!("pn-param: {}", e.message())))?;
    Ok((team.to_string(), topic))
}

/// An Android device: its registration token and its Firebase project.
fn fcm_binding(prid: &str, param: &str) -> Result<PushBinding, ContactError> {
    let (token, project) = (prid.trim(), param.trim());
    if !valid_registration_token(token) {
        return bad("pn-prid is not an FCM registration token");
    }
    if !valid_fcm_project(project) {
        return bad(format!(
            "pn-param: `{}` is not a Firebase project id or number",
            shown(project)
        ));
    }
    Ok(PushBinding {
        provider: Provider::Fcm,
        token: token.to_string(),
        team: String::new(),
        topic: project.to_string(),
    })
}

/// A VoIP topic: `<bundle id>.voip` (the only topic Apple accepts VoIP pushes on).
pub(crate) fn check_topic(topic: &str) -> Result<(), ContactError> {
    let valid_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_';
    if !topic.bytes().all(valid_char) || topic.starts_with('.') || topic.contains("..") {
        return bad(format!("`{}` is not a bundle id", shown(topic)));
    }
    match topic.strip_suffix(".voip") {
        Some(bundle) if !bundle.is_empty() => Ok(()),
        _ => bad(format!(
            "topic `{}` is not a VoIP topic (<bundle id>.voip)",
            shown(topic)
        )),
    }
}

/// One Contact (a URI, or one value of the header), whichever push service it names.
pub(crate) fn parse(contact: &str) -> Result<ParsedContact, ContactError> {
    parse_for(contact, &|_| true)
}

/// One Contact; a provider `served` refuses is unsupported (RFC 8599's 555) before its
/// parameters are looked at, as any service pushpark does not know.
fn parse_for(
    contact: &str,
    served: &dyn Fn(Provider) -> bool,
) -> Result<ParsedContact, ContactError> {
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
        Some(name) => {
            let Some(provider) = Provider::parse(&name) else {
                return Err(ContactError::Unsupported(format!(
                    "push provider `{}` is not supported",
                    shown(&name)
                )));
            };
            if !served(provider) {
                return Err(ContactError::Unsupported(format!(
                    "push provider `{}` is not supported: no {} section in the configuration",
                    provider.as_str(),
                    provider.section()
                )));
            }
            let name = provider.as_str();
            let (prid, param) = match (prid, param) {
                (Some(prid), Some(param)) => (prid, param),
                (None, _) => return bad(format!("pn-provider={name} without pn-prid")),
                (_, None) => return bad(format!("pn-provider={name} without pn-param")),
            };
            Some(match provider {
                Provider::Fcm => fcm_binding(&prid, &param)?,
                _ => {
                    let (team, topic) = team_and_topic(&param)?;
                    PushBinding {
                        provider,
                        token: voip_token(&prid)?,
                        team,
                        topic,
                    }
                }
            })
        }
    };
    Ok(ParsedContact {
        push,
        instance,
        wildcard: false,
    })
}

/// What a push Contact may name besides being well formed: the configured
/// team (with token auth, pushes for another team's apps would fail) and the
/// `apns.topics` allow-list. Plain immutable data: it survives fork().
#[derive(Debug, Clone)]
pub struct ContactRules {
    team_id: Option<String>,
    topics: Option<Vec<String>>,
    /// False: no `apns` section, iPhones are not served.
    apns: bool,
    /// `None`: no `fcm` section, FCM devices are not served.
    fcm: Option<FcmConfig>,
}

/// As an `apns` section without a team or topics allows, and no `fcm` section.
impl Default for ContactRules {
    fn default() -> ContactRules {
        ContactRules {
            team_id: None,
            topics: None,
            apns: true,
            fcm: None,
        }
    }
}

impl ContactRules {
    pub fn new(cfg: &EngineConfig) -> ContactRules {
        let team_id = match cfg.apns.as_ref().map(|a| &a.auth) {
            Some(AuthConfig::Token { team_id, .. }) => Some(team_id.clone()),
            _ => None,
        };
        ContactRules {
            team_id,
            topics: cfg.apns.as_ref().and_then(|a| a.topics.clone()),
            apns: cfg.apns.is_some(),
            fcm: cfg.fcm.clone(),
        }
    }

    fn allows(&self, b: &PushBinding) -> Result<(), ContactError> {
        if b.provider == Provider::Fcm {
            return match &self.fcm {
                Some(fcm) if !fcm.serves(&b.topic) => bad(format!(
                    "pn-param: Firebase project `{}` has no key in fcm.projects",
                    shown(&b.topic)
                )),
                _ => Ok(()),
            };
        }
        if let Some(team) = &self.team_id {
            if !b.team.eq_ignore_ascii_case(team) {
                let team = shown(&b.team);
                return bad(format!(
                    "pn-param: Team ID `{team}` is not the configured one"
                ));
            }
        }
        if let Some(topics) = &self.topics {
            if !topics.contains(&b.topic) {
                let topic = shown(&b.topic);
                return bad(format!("pn-param: topic `{topic}` is not in apns.topics"));
            }
        }
        Ok(())
    }

    /// Every Contact of a header value, parsed and checked; the first error
    /// refuses them all. `*` must stand alone.
    pub(crate) fn parse_all<'a>(
        &self,
        header: &'a str,
    ) -> Result<Vec<(&'a str, ParsedContact)>, ContactError> {
        let parts = split_contacts(header);
        let many = parts.len() > 1;
        let mut contacts = Vec::with_capacity(parts.len());
        for part in parts {
            let c = parse_for(part, &|p| match p {
                Provider::Fcm => self.fcm.is_some(),
                Provider::Apns | Provider::ApnsDev => self.apns,
            })?;
            if c.wildcard && many {
                return bad("`*` must be the only Contact");
            }
            if let Some(b) = &c.push {
                self.allows(b)?;
            }
            contacts.push((part, c));
        }
        Ok(contacts)
    }

    /// As `Engine::register` takes `contact`: the push service of its first
    /// push Contact ("apns" / "apns.dev" / "fcm"), None when it has none.
    pub fn check(&self, contact: &str) -> Result<Option<&'static str>, ContactError> {
        if contact.len() > MAX_CONTACT {
            return bad(format!("Contact is longer than {MAX_CONTACT} bytes"));
        }
        let contacts = self.parse_all(contact)?;
        Ok(contacts
            .iter()
            .find_map(|(_, c)| c.push.as_ref())
            .map(|b| b.provider.as_str()))
    }
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
            Some("urn:uuid:0c67446e-f1a1-11e9-9f9a-3c0754ed15f0")
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
        let web = parse("sip:dave@h;pn-provider=webpush;pn-prid=abc;pn-param=p").unwrap_err();
        assert!(matches!(web, ContactError::Unsupported(_)), "{web}");
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
        assert!(e.message().contains("percent-encoding"), "{e}");
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

    const REMOTE: &str = "11112222333344445555666677778888";

    #[test]
    fn linphone_voip_and_remote_tokens_give_the_voip_one() {
        let b = push_of(&format!(
            "<sip:a@h;pn-provider=apns;pn-prid={TOKEN}:voip;pn-param=ABCD123456.org.linphone.phone.voip>"
        ));
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        assert_eq!(b.topic, "org.linphone.phone.voip");
        let b = push_of(&format!(
            "<sip:a@h;pn-provider=apns.dev;pn-prid={REMOTE}:remote&{TOKEN}:voip;\
             pn-param=ABCD123456.org.linphone.phone.remote&voip>"
        ));
        assert_eq!(b.provider, Provider::ApnsDev);
        assert_eq!(b.token, TOKEN.to_ascii_lowercase());
        assert_eq!(
            (b.team.as_str(), b.topic.as_str()),
            ("ABCD123456", "org.linphone.phone.voip")
        );
        // Percent-encoded separators are the same list.
        let b = push_of(&format!(
            "sip:a@h;pn-provider=apns;pn-prid={TOKEN}%3Avoip%26{REMOTE}%3Aremote;pn-param=T.b.voip%26remote"
        ));
        assert_eq!(
            (b.token.as_str(), b.topic.as_str()),
            (&*TOKEN.to_ascii_lowercase(), "b.voip")
        );
    }

    #[test]
    fn linphone_lists_without_a_voip_token_or_service_are_refused() {
        let cases = [
            (
                format!("pn-prid={REMOTE}:remote;pn-param=T.b.remote&voip"),
                "no VoIP token",
            ),
            (
                format!("pn-prid={REMOTE}&{TOKEN}:voip;pn-param=T.b.voip"),
                "no :voip or :remote",
            ),
            (
                format!("pn-prid={TOKEN}:voip&{TOKEN}:voip;pn-param=T.b.voip"),
                "two VoIP tokens",
            ),
            (
                format!("pn-prid={TOKEN}:fcm;pn-param=T.b.voip"),
                "unknown token type",
            ),
            (
                format!("pn-prid={TOKEN}:voip;pn-param=T.b.remote"),
                "not a VoIP topic",
            ),
            (
                format!("pn-prid={TOKEN}:voip;pn-param=T.b.remote&voip&v-ip"),
                "service list",
            ),
        ];
        for (params, expected) in cases {
            let contact = format!("sip:a@h;pn-provider=apns;{params}");
            let e = parse(&contact).unwrap_err();
            assert!(matches!(e, ContactError::Invalid(_)), "{contact}: {e}");
            assert!(e.message().contains(expected), "{contact}: {e}");
        }
    }

    fn rules(team: Option<&str>, topics: Option<&[&str]>) -> ContactRules {
        ContactRules {
            team_id: team.map(String::from),
            topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
            apns: true,
            fcm: None,
        }
    }

    #[test]
    fn several_contacts_in_one_header_each_parse() {
        let header = format!(
            "\"A, B\" <sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.b.voip>;\
             +sip.instance=\"<urn:uuid:1>\", <sip:b@h?x=1,2>, sip:c@h;expires=0"
        );
        let all = rules(None, None).parse_all(&header).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].1.push.as_ref().unwrap().topic, "b.voip");
        assert_eq!(all[0].1.instance.as_deref(), Some("urn:uuid:1"));
        assert!(all[1].1.push.is_none() && all[2].1.push.is_none());
        assert_eq!(all[1].0, " <sip:b@h?x=1,2>");
        assert_eq!(rules(None, None).check(&header), Ok(Some("apns")));
        assert_eq!(rules(None, None).check("<sip:b@h>, <sip:c@h>"), Ok(None));
        let e = rules(None, None).parse_all("*, <sip:b@h>").unwrap_err();
        assert!(e.message().contains("only Contact"), "{e}");
        // One bad Contact refuses the header, whichever it is.
        let e = rules(None, None)
            .check("<sip:b@h>, <sip:c@h;pn-provider=webpush;pn-prid=x>")
            .unwrap_err();
        assert!(matches!(e, ContactError::Unsupported(_)), "{e}");
    }

    #[test]
    fn the_configured_team_and_topics_are_enforced() {
        let contact =
            |param: &str| format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param={param}");
        let r = rules(Some("ABCD123456"), Some(&["com.example.voip"]));
        assert_eq!(
            r.check(&contact("ABCD123456.com.example.voip")),
            Ok(Some("apns"))
        );
        assert_eq!(
            r.check(&contact("abcd123456.com.example.remote&voip")),
            Ok(Some("apns"))
        );
        let e = r
            .check(&contact("OTHERTEAM1.com.example.voip"))
            .unwrap_err();
        assert!(
            matches!(&e, ContactError::Invalid(m) if m.contains("Team ID `OTHERTEAM1`")),
            "{e}"
        );
        let e = r.check(&contact("ABCD123456.com.other.voip")).unwrap_err();
        assert!(e.message().contains("not in apns.topics"), "{e}");
        // Certificate auth names no team; no list allows every topic.
        assert!(rules(None, None)
            .check(&contact("OTHERTEAM1.com.other.voip"))
            .is_ok());
    }

    const FCM_TOKEN: &str = "eH0fLhuiRj2Np7UQ-opXAm:APA91bGtC-wH4sgW1jWkMKIZf7FYkm_RTQb7Jid7DfSJnC";

    #[test]
    fn fcm_devices_keep_their_token_as_sent_and_need_a_served_project() {
        let contact = |project: &str| {
            format!(
                "<sip:d@h;transport=tcp;pn-provider=FCM;pn-prid={FCM_TOKEN};pn-param={project}>"
            )
        };
        let b = push_of(&contact("voip-app-1"));
        assert_eq!(
            (
                b.provider,
                b.token.as_str(),
                b.team.as_str(),
                b.topic.as_str()
            ),
            (Provider::Fcm, FCM_TOKEN, "", "voip-app-1")
        );
        assert_eq!(push_of(&contact("929724111839")).topic, "929724111839");

        // Without an fcm section: RFC 8599's 555, as for any provider not served.
        let e = rules(None, None).check(&contact("voip-app-1")).unwrap_err();
        assert!(matches!(e, ContactError::Unsupported(_)), "{e}");

        let cfg = crate::engine::EngineConfig::from_json(
            r#"{"apns":{"auth":{"key_file":"/k","key_id":"ABCDE12345","team_id":"TEAM123456"}},
                "fcm":{"projects":{"voip-app-1":"/a.json"}}}"#,
        )
        .unwrap();
        let r = ContactRules::new(&cfg);
        assert_eq!(r.check(&contact("voip-app-1")), Ok(Some("fcm")));
        let e = r.check(&contact("other-app-1")).unwrap_err();
        assert!(
            matches!(&e, ContactError::Invalid(m) if m.contains("`other-app-1` has no key")),
            "{e}"
        );

        for (params, expected) in [
            (
                "pn-prid=a%20b;pn-param=voip-app-1",
                "not an FCM registration token",
            ),
            (
                &format!("pn-prid={FCM_TOKEN};pn-param=Voip_App") as &str,
                "not a Firebase project",
            ),
            (&format!("pn-prid={FCM_TOKEN}"), "without pn-param"),
            ("pn-param=voip-app-1", "without pn-prid"),
        ] {
            let e = parse(&format!("sip:d@h;pn-provider=fcm;{params}")).unwrap_err();
            assert!(
                matches!(&e, ContactError::Invalid(m) if m.contains(expected)),
                "{params}: {e}"
            );
        }
    }

    /// Messages become reason phrases: short, one line, never a whole token,
    /// whatever the input.
    #[test]
    fn error_messages_are_short_single_lines_without_tokens() {
        let long = "a".repeat(3000);
        let cases = [
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN}%zz;pn-param=T.b.voip"),
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param={TOKEN}%0D%0A.b"),
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param={TOKEN}%0D%0A.b.voip"),
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN}:{TOKEN};pn-param=T.b.voip"),
            format!("sip:a@h;pn-provider={TOKEN};pn-prid={TOKEN}"),
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.{long}.voip"),
            format!("sip:a@h;pn-provider=apns;pn-prid={TOKEN};pn-param=T.{TOKEN}"),
        ];
        let r = rules(Some("T"), Some(&["b.voip"]));
        for contact in cases {
            let e = r.check(&contact).unwrap_err().to_string();
            assert!(e.len() <= 120, "{e}");
            assert!(!e.chars().any(char::is_control), "{e:?}");
            assert!(
                !e.to_ascii_lowercase()
                    .contains(&TOKEN[..32].to_ascii_lowercase()),
                "{e}"
            );
        }
    }

    #[test]
    fn instance_normalization() {
        assert_eq!(
            normalize_instance("\"<URN:UUID:0C67446E-F1A1-11E9>\"").as_deref(),
            Some("urn:uuid:0c67446e-f1a1-11e9")
        );
        assert_eq!(
            normalize_instance("<Urn:GSMA:imei:3580-AB>").as_deref(),
            Some("urn:gsma:imei:3580-AB")
        );
        assert_eq!(normalize_instance("urn:X").as_deref(), Some("urn:x"));
        assert_eq!(normalize_instance("Device-1").as_deref(), Some("Device-1"));
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

//! Property tests: any Contact text gives a binding or a clear error (never a
//! panic), and a binding is exactly what the RFC 8599 parameters said.

use super::*;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures become plain regression tests, not files next to the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Text made of the pieces the parser looks for, so that random strings
/// reach its deeper branches, plus arbitrary Unicode.
fn contact_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("pn-provider=".to_string()),
        Just("PN-PRID=".to_string()),
        Just("pn-param=".to_string()),
        Just("+sip.instance=".to_string()),
        Just("apns".to_string()),
        Just("apns.dev".to_string()),
        Just("00fa7b3c9e1d2f4a5b6c7d8e9f0a1b2c".to_string()),
        Just("TEAM.com.example.voip".to_string()),
        Just("sip:alice@host".to_string()),
        "[;<>\"\\\\%@?=. *]".prop_map(String::from),
        "%[0-9a-fA-F+-]{0,2}".prop_map(String::from),
        any::<char>().prop_map(String::from),
        ".{0,8}".prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

/// What the binding's fields must satisfy, whatever the input.
fn check_binding(input: &str, b: &PushBinding) -> Result<(), TestCaseError> {
    prop_assert!((32..=200).contains(&b.token.len()) && b.token.len() % 2 == 0);
    prop_assert!(b
        .token
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    prop_assert!(check_topic(&b.topic).is_ok(), "topic {:?}", b.topic);
    let lower = input.to_ascii_lowercase();
    prop_assert!(lower.contains("pn-prid") && lower.contains("pn-param"));
    if !input.contains('%') {
        prop_assert!(lower.contains(&b.token), "token not in the input");
        let bundle = b.topic.strip_suffix(".voip").expect("a VoIP topic");
        prop_assert!(input.contains(bundle), "bundle id not in the input");
    }
    // The binding, written back as a plain Contact, reads back the same.
    let canonical = format!(
        "sip:u@h;pn-provider={};pn-prid={};pn-param={}.{}",
        b.provider.as_str(),
        b.token,
        b.team,
        b.topic
    );
    prop_assert_eq!(parse(&canonical).map(|c| c.push), Ok(Some(b.clone())));
    Ok(())
}

fn check_any(input: &str) -> Result<(), TestCaseError> {
    match parse(input) {
        Ok(c) => {
            if let Some(b) = &c.push {
                check_binding(input, b)?;
                prop_assert!(!c.wildcard);
            }
            if let Some(i) = &c.instance {
                prop_assert!(!i.is_empty() && normalize_instance(i).as_ref() == Some(i));
            }
        }
        Err(e) => prop_assert!(!e.message().is_empty()),
    }
    Ok(())
}

/// An RFC 3261 quoted-string holding `text` (`"` and `\` escaped).
fn quoted(text: &str) -> String {
    let mut q = String::from('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// `s` with the bytes `mask` picks (cycled) percent-encoded; the others must be ASCII.
fn percent_encode_some(s: &str, mask: &[bool]) -> String {
    s.bytes()
        .zip(mask.iter().cycle())
        .map(|(b, &enc)| {
            if enc {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

/// A well-formed push Contact built from random pieces, and what parsing it must give.
#[derive(Debug, Clone)]
struct Built {
    text: String,
    binding: PushBinding,
    instance: Option<String>,
}

/// How the device spells its token and topic: RFC 8599 plainly, or one of
/// Linphone's lists (which name the VoIP token and the remote one).
#[derive(Debug, Clone, Copy)]
enum Dialect {
    Plain,
    VoipSuffix,
    RemoteThenVoip,
    VoipThenRemote,
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![
        Just(Dialect::Plain),
        Just(Dialect::VoipSuffix),
        Just(Dialect::RemoteThenVoip),
        Just(Dialect::VoipThenRemote),
    ]
}

prop_compose! {
    fn push_contact()(
        provider in "[aA][pP][nN][sS](\\.[dD][eE][vV])?",
        token in "([0-9a-fA-F]{2}){16,100}",
        remote in "([0-9a-f]{2}){16,40}",
        dialect in dialect(),
        team in "[A-Z0-9]{1,12}",
        bundle in "[a-z][a-z0-9_-]{0,10}(\\.[a-z][a-z0-9_-]{0,10}){0,3}",
        // Any case of the URN's scheme, namespace and uuid: one device.
        instance in proptest::option::of("[uU][rR][nN]:[uU][uU][iI][dD]:[0-9A-Fa-f-]{8,36}"),
        user in "[a-z0-9+._-]{1,12}",
        host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?|\\[[0-9a-f:]{2,20}\\](:[0-9]{1,5})?",
        display in proptest::option::of("[^\r\n]{0,16}"),
        bare in any::<bool>(),
        in_uri in any::<[bool; 3]>(),
        quote in any::<[bool; 3]>(),
        encode in prop::collection::vec(any::<bool>(), 1..8),
        extra in prop::collection::vec(
            ("[a-z][a-z-]{0,7}", "[a-z0-9.]{0,8}|\"[^\r\n]{0,8}\"|\"[a-z]@[a-z]\""), 0..4),
        shuffle_seed in any::<u64>(),
    ) -> Built {
        let topic = format!("{bundle}.voip");
        let voip = percent_encode_some(&token, &encode);
        let (prid, services) = match dialect {
            Dialect::Plain => (voip, "voip"),
            Dialect::VoipSuffix => (format!("{voip}:voip"), "voip"),
            Dialect::RemoteThenVoip => (format!("{remote}:remote&{voip}:voip"), "remote&voip"),
            Dialect::VoipThenRemote => (format!("{voip}:voip&{remote}:remote"), "voip&remote"),
        };
        let values = [provider.clone(), prid, format!("{team}.{bundle}.{services}")];
        let names = ["pn-provider", "pn-prid", "pn-param"];
        let (mut uri_params, mut header_params) = (Vec::new(), Vec::new());
        // Bare: no display name and no `<>`, so every parameter is a header parameter.
        let bare = bare && display.is_none();
        for i in 0..3 {
            let value = if quote[i] { format!("\"{}\"", values[i]) } else { values[i].clone() };
            let p = format!("{}={}", names[i], value);
            if in_uri[i] && !bare { uri_params.push(p) } else { header_params.push(p) }
        }
        for (k, v) in extra {
            // Extra parameters must not be ones the parser reads.
            if !k.starts_with("pn-") {
                let v = if v.starts_with('"') { quoted(v.trim_matches('"')) } else { v };
                header_params.push(format!("{k}={v}"));
            }
        }
        if let Some(i) = &instance {
            header_params.push(format!("+sip.instance=\"<{i}>\""));
        }
        // A rotation rather than a shuffle, so failing cases shrink well.
        let rot = (shuffle_seed % (header_params.len() as u64 + 1)) as usize;
        header_params.rotate_left(rot);
        let mut text = match &display {
            Some(d) => format!("{} ", quoted(d)),
            None => String::new(),
        };
        if bare {
            text += &format!("sip:{user}@{host}");
        } else {
            text += &format!("<sip:{user}@{host}");
            for p in &uri_params { text += &format!(";{p}"); }
            text += ">";
        }
        for p in &header_params { text += &format!(";{p}"); }
        Built {
            text,
            binding: PushBinding {
                provider: Provider::parse(&provider).unwrap(),
                token: token.to_ascii_lowercase(),
                team,
                topic,
            },
            instance: instance.map(|i| i.to_ascii_lowercase()),
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_text_gives_a_binding_or_an_error(input in any::<String>()) {
        check_any(&input)?;
    }

    #[test]
    fn text_of_contact_pieces_gives_a_binding_or_an_error(input in contact_soup()) {
        check_any(&input)?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn a_well_formed_push_contact_gives_its_binding(b in push_contact()) {
        let c = parse(&b.text).map_err(|e| TestCaseError::fail(format!("{}: {e}", b.text)))?;
        prop_assert_eq!(c.push.as_ref(), Some(&b.binding), "{}", b.text);
        prop_assert_eq!(c.instance, b.instance, "{}", b.text);
        check_binding(&b.text, c.push.as_ref().unwrap())?;
        // As events and listings show it: the token cut to its first 8 digits.
        let shown = crate::engine::redact::contact(&b.text).to_ascii_lowercase();
        prop_assert!(!shown.contains(&b.binding.token[8..]), "{}", shown);
    }

    /// Several Contacts in one header value: each gives its own binding, in
    /// order, and the rules' check names the first one's provider.
    #[test]
    fn a_header_of_several_contacts_gives_each_binding(
        list in prop::collection::vec(push_contact(), 1..5),
    ) {
        let header = list.iter().map(|b| b.text.as_str()).collect::<Vec<_>>().join(" , ");
        let all = ContactRules::default()
            .parse_all(&header)
            .map_err(|e| TestCaseError::fail(format!("{header}: {e}")))?;
        prop_assert_eq!(all.len(), list.len(), "{}", header);
        for ((text, c), b) in all.iter().zip(&list) {
            prop_assert_eq!(text.trim(), b.text.as_str());
            prop_assert_eq!(c.push.as_ref(), Some(&b.binding), "{}", header);
            prop_assert_eq!(&c.instance, &b.instance, "{}", header);
        }
        let first = list[0].binding.provider.as_str();
        prop_assert_eq!(ContactRules::default().check(&header), Ok(Some(first)));
    }

    /// A token list without a VoIP token is refused, never pushed on the
    /// remote (non-VoIP) token.
    #[test]
    fn a_list_without_a_voip_token_is_refused(
        remotes in prop::collection::vec("([0-9a-f]{2}){16,40}", 1..3),
    ) {
        let prid = remotes.iter().map(|t| format!("{t}:remote")).collect::<Vec<_>>().join("&");
        let text = format!("sip:a@h;pn-provider=apns;pn-prid={prid};pn-param=T.b.remote&voip");
        let e = parse(&text).unwrap_err();
        prop_assert!(matches!(e, ContactError::Invalid(_)), "{}", e);
        prop_assert!(e.message().contains("no VoIP token"), "{}", e);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Percent-encoding round-trips: any instance id, every byte encoded,
    /// reads back as the id itself.
    #[test]
    fn a_percent_encoded_instance_reads_back(id in "[^\"<> \t\r\n]{1,40}") {
        let encoded = percent_encode_some(&id, &[true]);
        let c = parse(&format!("<sip:a@h>;+sip.instance=\"<{encoded}>\"")).unwrap();
        prop_assert_eq!(c.instance, normalize_instance(&id));
    }

    /// A `%` not followed by two hex digits is refused, never decoded loosely.
    #[test]
    fn a_bad_percent_escape_is_an_error(
        bad in "[+ -][0-9a-fA-F]|[^0-9a-fA-F][^\"<>]|[0-9a-fA-F][^0-9a-fA-F\"<>]|.?"
    ) {
        let e = parse(&format!("<sip:a@h>;+sip.instance=\"<urn:%{bad}>\"")).unwrap_err();
        prop_assert!(e.message().contains("percent-encoding"), "{}", e);
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// A pn-prid that is not an APNs token (wrong length, odd, a character
    /// other than hex but legal in a URI parameter, a `:` that is no Linphone
    /// suffix; up to a few KB) is refused with an error about pn-prid.
    #[test]
    fn a_bad_token_is_an_error_about_pn_prid(
        token in "[0-9a-f]{0,31}|[0-9a-f]{201,3000}|([0-9a-f]{2}){16,99}[0-9a-f]\
                  |[0-9a-f]{10}[g-zG-Z_.:+ -]([0-9a-f]{2}){16,20}[0-9a-f]",
    ) {
        let text = format!("sip:a@h;pn-provider=apns;pn-prid={token};pn-param=T.b.voip");
        let e = parse(&text).unwrap_err();
        prop_assert!(e.to_string().starts_with("bad Contact: pn-prid"), "{}", e);
    }
}

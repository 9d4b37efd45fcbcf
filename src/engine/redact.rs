//! Device tokens are never shown whole (events, listings, logs): a token
//! identifies the phone to Apple, and with a leaked signing key it could be
//! pushed by anyone. Enough of it is kept to tell devices apart.

use super::contact::hex_token;

/// How much of a token is shown.
const SHOWN: usize = 8;

/// The shortest token taken (see `hex_token`).
const MIN_TOKEN: usize = 32;

fn cut(token: &str) -> String {
    let shown: String = token.chars().take(SHOWN).collect();
    format!("{shown}...")
}

/// A device key as shown: a key that is a token (a device without
/// `+sip.instance`) is cut; an instance id is shown as is.
pub(crate) fn key(key: &str) -> String {
    if hex_token(key).is_ok() {
        cut(key)
    } else {
        key.to_string()
    }
}

/// A token as shown.
pub(crate) fn token(token: &str) -> String {
    cut(token)
}

/// A Contact with the value of every `pn-prid` parameter cut (a whole
/// Linphone list as one), in whatever case, spacing or encoding, and any
/// other run of hex digits as long as a token (quoted or misplaced ones).
pub(crate) fn contact(contact: &str) -> String {
    hex_runs_cut(&pn_prid_cut(contact))
}

fn hex_runs_cut(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        let len = rest[start..]
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len() - start);
        let run = &rest[start..start + len];
        out.push_str(&rest[..start]);
        if len >= MIN_TOKEN {
            out.push_str(&cut(run));
        } else {
            out.push_str(run);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

fn pn_prid_cut(contact: &str) -> String {
    const NAME: &str = "pn-prid";
    let lower = contact.to_ascii_lowercase();
    let mut out = String::with_capacity(contact.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(NAME) {
        let name_end = at + found + NAME.len();
        let rest = &contact[name_end..];
        let after_blanks = |s: &str| s.len() - s.trim_start().len();
        let eq = after_blanks(rest);
        if !rest[eq..].starts_with('=') {
            out.push_str(&contact[at..name_end]);
            at = name_end;
            continue;
        }
        let value = name_end + eq + 1 + after_blanks(&rest[eq + 1..]);
        let end = contact[value..]
            .find([';', '>', ',', '?', ' '])
            .map_or(contact.len(), |i| value + i);
        out.push_str(&contact[at..value]);
        out.push_str(&cut(&contact[value..end]));
        at = end;
    }
    out.push_str(&contact[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00fa7b3c9e1d2f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9012345";

    #[test]
    fn keys_that_are_tokens_are_cut() {
        assert_eq!(key(TOKEN), "00fa7b3c...");
        assert_eq!(key("urn:uuid:1"), "urn:uuid:1");
        assert_eq!(token(TOKEN), "00fa7b3c...");
    }

    #[test]
    fn every_pn_prid_of_a_contact_is_cut() {
        let c = format!(
            "<sip:a@h;PN-PRID={TOKEN}:remote&{TOKEN}:voip;pn-param=T.b.voip>, \
             sip:b@h;pn-prid=\"{TOKEN}\", sip:c@h;pn-prid=%30{TOKEN}"
        );
        let shown = contact(&c);
        assert!(!shown.contains(&TOKEN[..16]), "{shown}");
        assert_eq!(
            shown,
            "<sip:a@h;PN-PRID=00fa7b3c...;pn-param=T.b.voip>, \
             sip:b@h;pn-prid=\"00fa7b3..., sip:c@h;pn-prid=%3000fa7..."
        );
        assert_eq!(contact("sip:a@h;pn-prid="), "sip:a@h;pn-prid=...");
        assert_eq!(
            contact(&format!("sip:a@h;pn-prid = {TOKEN};x=pn-prid")),
            "sip:a@h;pn-prid = 00fa7b3c...;x=pn-prid"
        );
        assert_eq!(
            contact(&format!("sip:a@h;pn-prid=\" {TOKEN}\";x=abc123")),
            "sip:a@h;pn-prid=\"... 00fa7b3c...\";x=abc123"
        );
    }
}

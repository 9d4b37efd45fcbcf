//! Device tokens are never shown whole (events, listings, logs): a token
//! identifies the phone to Apple, and with a leaked signing key it could be
//! pushed by anyone. Enough of it is kept to tell devices apart.

use super::contact::hex_token;

/// How much of a token is shown.
const SHOWN: usize = 8;

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
/// Linphone list as one), in whatever case, quoting or encoding.
pub(crate) fn contact(contact: &str) -> String {
    const NAME: &str = "pn-prid=";
    let lower = contact.to_ascii_lowercase();
    let mut out = String::with_capacity(contact.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(NAME) {
        let value = at + found + NAME.len();
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
    }
}

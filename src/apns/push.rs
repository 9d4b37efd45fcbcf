//! One push as the caller describes it, checked before anything goes on the wire.

use std::fmt;

use crate::push_client::SubmitError;

/// Apple's `apns-push-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushType {
    Alert,
    Background,
    Voip,
    Location,
    Complication,
    FileProvider,
    Mdm,
    LiveActivity,
    PushToTalk,
    Widgets,
}

impl PushType {
    pub const ALL: &'static [PushType] = &[
        PushType::Alert,
        PushType::Background,
        PushType::Voip,
        PushType::Location,
        PushType::Complication,
        PushType::FileProvider,
        PushType::Mdm,
        PushType::LiveActivity,
        PushType::PushToTalk,
        PushType::Widgets,
    ];

    /// The header value Apple expects.
    pub fn as_str(self) -> &'static str {
        match self {
            PushType::Alert => "alert",
            PushType::Background => "background",
            PushType::Voip => "voip",
            PushType::Location => "location",
            PushType::Complication => "complication",
            PushType::FileProvider => "fileprovider",
            PushType::Mdm => "mdm",
            PushType::LiveActivity => "liveactivity",
            PushType::PushToTalk => "pushtotalk",
            PushType::Widgets => "widgets",
        }
    }

    /// Apple's payload limit: 5 KiB for VoIP, 4 KiB for everything else.
    pub fn max_payload(self) -> usize {
        match self {
            PushType::Voip => 5120,
            _ => 4096,
        }
    }
}

impl std::str::FromStr for PushType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PushType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown push type {s:?}"))
    }
}

impl fmt::Display for PushType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A push to send. `token` is the device token in hex, `payload` the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub token: String,
    pub topic: String,
    pub push_type: PushType,
    pub priority: u8,
    /// `apns-expiration` (Unix seconds); `None` lets Apple pick (it stores and retries).
    pub expiration: Option<u64>,
    pub collapse_id: Option<String>,
    pub payload: String,
}

/// Device tokens are 32 bytes today; leave room for Apple growing them.
const MAX_TOKEN_HEX: usize = 200;
const MAX_COLLAPSE_ID: usize = 64;

fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

impl Push {
    /// A VoIP push as a call needs it: priority 10, expiring at `expiration`
    /// (Unix seconds; for calls, now + the ring timeout).
    pub fn voip(
        token: impl Into<String>,
        topic: impl Into<String>,
        payload: impl Into<String>,
        expiration: u64,
    ) -> Push {
        Push {
            token: token.into(),
            topic: topic.into(),
            push_type: PushType::Voip,
            priority: 10,
            expiration: Some(expiration),
            collapse_id: None,
            payload: payload.into(),
        }
    }

    /// Checks what Apple would refuse with a 400/413, so such pushes never leave.
    pub fn validate(&self) -> Result<(), SubmitError> {
        let bad = |why: &str| Err(SubmitError::Invalid(why.to_string()));
        let t = &self.token;
        if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("the device token must be hex");
        }
        if t.is_empty() || t.len() % 2 != 0 || t.len() > MAX_TOKEN_HEX {
            return bad("the device token must be an even number of hex digits (64 today)");
        }
        if self.topic.is_empty() {
            return bad("the topic (bundle id) is missing");
        }
        if !visible_ascii(&self.topic) {
            return bad("the topic must be printable ASCII without spaces");
        }
        if !matches!(self.priority, 1 | 5 | 10) {
            return bad("the priority must be 1, 5 or 10");
        }
        if let Some(c) = &self.collapse_id {
            if c.len() > MAX_COLLAPSE_ID || !c.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return bad("the collapse id must be at most 64 printable ASCII bytes");
            }
        }
        if self.payload.is_empty() {
            return bad("the payload is empty");
        }
        if self.payload.len() > self.push_type.max_payload() {
            return Err(SubmitError::Invalid(format!(
                "the payload is {} bytes; {} pushes allow at most {}",
                self.payload.len(),
                self.push_type,
                self.push_type.max_payload()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00fc13adff785122b4ad28809a3420982341241421348097878e577c991de8f0";

    fn invalid(p: &Push) -> String {
        match p.validate() {
            Err(SubmitError::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_voip_push_validates() {
        let p = Push::voip(TOKEN, "com.example.app.voip", "{}", 1);
        assert_eq!(p.validate(), Ok(()));
        assert_eq!((p.priority, p.push_type), (10, PushType::Voip));
    }

    #[test]
    fn bad_pushes_are_refused_with_the_reason() {
        let good = Push::voip(TOKEN, "com.example.app.voip", "{}", 1);
        let mut p = good.clone();
        p.token = "zz".repeat(32);
        assert!(invalid(&p).contains("hex"));
        p.token = "abc".into();
        assert!(invalid(&p).contains("even"));
        p = good.clone();
        p.topic.clear();
        assert!(invalid(&p).contains("topic"));
        p = good.clone();
        p.priority = 7;
        assert!(invalid(&p).contains("priority"));
        p = good.clone();
        p.payload.clear();
        assert!(invalid(&p).contains("empty"));
        p = good.clone();
        p.collapse_id = Some("x".repeat(65));
        assert!(invalid(&p).contains("collapse"));
    }

    #[test]
    fn payload_limits_depend_on_the_push_type() {
        let mut p = Push::voip(TOKEN, "t", "x".repeat(5120), 1);
        assert_eq!(p.validate(), Ok(()));
        p.payload.push('x');
        assert!(invalid(&p).contains("5120"));
        p.push_type = PushType::Alert;
        p.payload.truncate(4096);
        assert_eq!(p.validate(), Ok(()));
        p.payload.push('x');
        assert!(invalid(&p).contains("4096"));
    }

    #[test]
    fn push_types_round_trip() {
        for t in PushType::ALL {
            assert_eq!(t.as_str().parse::<PushType>(), Ok(*t));
        }
        assert!("nope".parse::<PushType>().is_err());
    }
}

//! Apple's APNs error reasons, as sent in the JSON body `{"reason": "..."}`.
//! Shared by the client (to classify answers) and the mock (to produce them).

use std::fmt;
use std::str::FromStr;

macro_rules! reasons {
    ($($name:ident = $status:literal),+ $(,)?) => {
        /// Every reason Apple documents, with the HTTP status it comes with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($name),+ }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name),+];

            /// The exact string Apple puts in the `reason` field.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$name => stringify!($name)),+ }
            }

            /// The HTTP status Apple answers with this reason.
            pub fn status(self) -> u16 {
                match self { $(Reason::$name => $status),+ }
            }
        }

        impl FromStr for Reason {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $(stringify!($name) => Ok(Reason::$name),)+ _ => Err(()) }
            }
        }
    };
}

reasons! {
    BadCollapseId = 400,
    BadDeviceToken = 400,
    BadExpirationDate = 400,
    BadMessageId = 400,
    BadPriority = 400,
    BadTopic = 400,
    DeviceTokenNotForTopic = 400,
    DuplicateHeaders = 400,
    IdleTimeout = 400,
    InvalidPushType = 400,
    MissingDeviceToken = 400,
    MissingTopic = 400,
    PayloadEmpty = 400,
    TopicDisallowed = 400,
    BadCertificate = 403,
    BadCertificateEnvironment = 403,
    ExpiredProviderToken = 403,
    Forbidden = 403,
    InvalidProviderToken = 403,
    MissingProviderToken = 403,
    BadPath = 404,
    MethodNotAllowed = 405,
    ExpiredToken = 410,
    Unregistered = 410,
    PayloadTooLarge = 413,
    TooManyProviderTokenUpdates = 429,
    TooManyRequests = 429,
    InternalServerError = 500,
    ServiceUnavailable = 503,
    Shutdown = 503,
}

impl Reason {
    /// The device token will never work again: the caller should forget it.
    pub fn token_is_dead(self) -> bool {
        matches!(
            self,
            Reason::Unregistered | Reason::ExpiredToken | Reason::BadDeviceToken
        )
    }

    /// Worth sending again later (on this or another connection).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Reason::TooManyRequests
                | Reason::TooManyProviderTokenUpdates
                | Reason::InternalServerError
                | Reason::ServiceUnavailable
                | Reason::Shutdown
        )
    }
}

impl crate::push_client::RejectReason for Reason {
    const ALL: &'static [Reason] = Reason::ALL;

    fn as_str(self) -> &'static str {
        Reason::as_str(self)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>(), Ok(*r));
        }
        assert!("NoSuchReason".parse::<Reason>().is_err());
    }

    #[test]
    fn dead_tokens_are_the_410s_and_bad_device_token() {
        let dead: Vec<_> = Reason::ALL.iter().filter(|r| r.token_is_dead()).collect();
        assert_eq!(
            dead,
            [
                &Reason::BadDeviceToken,
                &Reason::ExpiredToken,
                &Reason::Unregistered
            ]
        );
        assert!(Reason::ALL
            .iter()
            .filter(|r| r.status() == 410)
            .all(|r| r.token_is_dead()));
    }
}

//! REGISTER order per device: REGISTERs of one device handled by different
//! SIP workers may reach the engine in another order than they were sent. The
//! last applied (Call-ID, CSeq) of each (AOR, device key), removals included,
//! is kept for a while, so an older REGISTER of the same Call-ID that comes
//! late is ignored instead of undoing a newer one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long an entry is kept at least, so an unREGISTER (expires 0) is
/// remembered too: longer than any SIP transaction (64*T1 = 32 s) with room
/// for workers that stall.
pub(crate) const KEEP_AT_LEAST: Duration = Duration::from_secs(300);

struct Applied {
    call_id: Box<str>,
    cseq: u32,
    until: Instant,
}

#[derive(Default)]
pub(crate) struct RegisterOrder {
    last: HashMap<(Box<str>, Box<str>), Applied>,
}

impl RegisterOrder {
    /// Whether a REGISTER (Call-ID, CSeq) of the device may be applied; when it
    /// may, it becomes the device's last one, remembered until `until`. Only a
    /// lower CSeq of the same Call-ID is refused: another Call-ID is a new
    /// registration (the app restarted), the same CSeq a retransmission.
    pub(crate) fn admit(
        &mut self,
        aor: &str,
        key: &str,
        call_id: &str,
        cseq: u32,
        until: Instant,
    ) -> bool {
        let id = (Box::from(aor), Box::from(key));
        if let Some(last) = self.last.get(&id) {
            if &*last.call_id == call_id && cseq < last.cseq {
                return false;
            }
        }
        let applied = Applied {
            call_id: call_id.into(),
            cseq,
            until,
        };
        self.last.insert(id, applied);
        true
    }

    pub(crate) fn forget_before(&mut self, now: Instant) {
        self.last.retain(|_, a| a.until >= now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_cseq_of_the_same_call_id_is_refused_until_forgotten() {
        let mut o = RegisterOrder::default();
        let t0 = Instant::now();
        let later = t0 + KEEP_AT_LEAST;
        assert!(o.admit("alice", "d1", "c1", 5, later));
        assert!(!o.admit("alice", "d1", "c1", 4, later), "older");
        assert!(o.admit("alice", "d1", "c1", 5, later), "a retransmission");
        assert!(o.admit("alice", "d2", "c1", 1, later), "another device");
        assert!(o.admit("bob", "d1", "c1", 1, later), "another AOR");
        assert!(o.admit("alice", "d1", "c2", 1, later), "a new Call-ID");
        assert!(o.admit("alice", "d1", "c1", 2, later), "c2 replaced c1");
        o.forget_before(later);
        assert_eq!(o.len(), 3);
        o.forget_before(later + Duration::from_millis(1));
        assert_eq!(o.len(), 0);
    }
}

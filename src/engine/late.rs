//! Late wakes ("ghost calls"): a device pushed for a call that ended before
//! it registered shows the call when it wakes. Such devices are remembered
//! for a while after the call, so when one registers the host can send it the
//! INVITE and at once a CANCEL with the call's end as Reason; never a second
//! push.

use std::collections::HashMap;
use std::time::Instant;

pub(crate) struct Ghost {
    pub park_id: u64,
    pub call_id: Box<str>,
    pub caller_uri: Box<str>,
    pub caller_name: Box<str>,
    pub device_key: Box<str>,
    /// The SIP cause for the Reason header: 200, 487 or the reject code.
    pub cause: u16,
    pub until: Instant,
}

#[derive(Default)]
pub(crate) struct LateWakes {
    by_aor: HashMap<Box<str>, Vec<Ghost>>,
}

impl LateWakes {
    pub(crate) fn add(&mut self, aor: &str, ghost: Ghost) {
        self.by_aor.entry(aor.into()).or_default().push(ghost);
    }

    /// The device's ghosts still in their window, forgotten: each is told once.
    pub(crate) fn take(&mut self, aor: &str, device_key: &str, now: Instant) -> Vec<Ghost> {
        let Some(ghosts) = self.by_aor.get_mut(aor) else {
            return Vec::new();
        };
        let (mine, others) = std::mem::take(ghosts)
            .into_iter()
            .partition(|g| &*g.device_key == device_key);
        *ghosts = others;
        if ghosts.is_empty() {
            self.by_aor.remove(aor);
        }
        mine.into_iter()
            .filter(|g: &Ghost| g.until >= now)
            .collect()
    }

    /// The push of `park_id` to the device failed: it never showed the call.
    pub(crate) fn push_failed(&mut self, aor: &str, park_id: u64, device_key: &str) {
        if let Some(ghosts) = self.by_aor.get_mut(aor) {
            ghosts.retain(|g| !(g.park_id == park_id && &*g.device_key == device_key));
            if ghosts.is_empty() {
                self.by_aor.remove(aor);
            }
        }
    }

    pub(crate) fn forget_before(&mut self, now: Instant) {
        self.by_aor.retain(|_, ghosts| {
            ghosts.retain(|g| g.until >= now);
            !ghosts.is_empty()
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_aor.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ghost(park_id: u64, key: &str, until: Instant) -> Ghost {
        Ghost {
            park_id,
            call_id: "c".into(),
            caller_uri: "sip:bob@h".into(),
            caller_name: "Bob".into(),
            device_key: key.into(),
            cause: 487,
            until,
        }
    }

    #[test]
    fn a_ghost_is_told_once_within_its_window() {
        let mut l = LateWakes::default();
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(30);
        l.add("alice", ghost(1, "d1", until));
        l.add("alice", ghost(2, "d1", until));
        l.add("alice", ghost(1, "d2", until));
        l.add("alice", ghost(1, "d3", until));
        let taken: Vec<u64> = l
            .take("alice", "d1", t0)
            .iter()
            .map(|g| g.park_id)
            .collect();
        assert_eq!(taken, [1, 2]);
        assert!(l.take("alice", "d1", t0).is_empty(), "once");
        l.push_failed("alice", 1, "d2");
        assert!(l.take("alice", "d2", t0).is_empty(), "its push failed");
        assert!(
            l.take("alice", "d3", until + Duration::from_millis(1))
                .is_empty(),
            "too late"
        );
        assert_eq!(l.len(), 0);
        l.add("bob", ghost(3, "d1", until));
        l.forget_before(until);
        assert_eq!(l.len(), 1);
        l.forget_before(until + Duration::from_millis(1));
        assert_eq!(l.len(), 0);
    }
}

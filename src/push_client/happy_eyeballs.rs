//! Happy Eyeballs (RFC 8305 §5): connection attempts to a host's addresses,
//! IPv6 and IPv4 interleaved, each started 250 ms after the one before or as
//! soon as it fails; the first to connect wins and the others are dropped.
//! So an address that never answers costs 250 ms, not the whole connect timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;

/// RFC 8305's recommended Connection Attempt Delay.
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to one of `addrs` with `connect`. Fails with the last failure
/// (and its address), or `None` when there is no address at all.
pub(crate) async fn connect<T, F>(
    addrs: impl IntoIterator<Item = SocketAddr>,
    delay: Duration,
    connect: impl Fn(SocketAddr) -> F,
) -> Result<T, Option<(SocketAddr, io::Error)>>
where
    F: Future<Output = io::Result<T>>,
{
    let mut waiting = interleave(addrs).into_iter();
    let mut running: Vec<(SocketAddr, Pin<Box<F>>)> = Vec::new();
    let mut last_error = None;
    let next_start = tokio::time::sleep(delay);
    tokio::pin!(next_start);
    let mut start_now = true;
    std::future::poll_fn(|cx| loop {
        if std::mem::take(&mut start_now) || next_start.as_mut().poll(cx).is_ready() {
            match waiting.next() {
                Some(addr) => {
                    running.push((addr, Box::pin(connect(addr))));
                    next_start.as_mut().reset(Instant::now() + delay);
                    // Polls the timer again, so that it wakes us.
                    continue;
                }
                None if running.is_empty() => return Poll::Ready(Err(last_error.take())),
                None => {}
            }
        }
        let mut i = 0;
        while i < running.len() {
            match running[i].1.as_mut().poll(cx) {
                Poll::Ready(Ok(conn)) => return Poll::Ready(Ok(conn)),
                Poll::Ready(Err(e)) => {
                    let (addr, _) = running.swap_remove(i);
                    last_error = Some((addr, e));
                    // A failure starts the next attempt at once.
                    start_now = true;
                }
                Poll::Pending => i += 1,
            }
        }
        if !start_now {
            return Poll::Pending;
        }
    })
    .await
}

/// IPv6 first, then the families alternate; each keeps the resolver's order.
fn interleave(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<_>, Vec<_>) = addrs.into_iter().partition(SocketAddr::is_ipv6);
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    let mut out = Vec::new();
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::collections::HashMap;

    // Real time (paused time needs tokio's test-util, which would make `cargo
    // test` and `cargo build` rebuild the library in turn): each test asserts
    // on which address won and in what order attempts started, and on times
    // only with margins of seconds.

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[derive(Clone, Copy)]
    enum Fake {
        Blackhole,
        Refuse(u64),
        Accept(u64),
    }

    /// A connector whose addresses behave as told (after that many ms), and
    /// that notes when each attempt started.
    struct Net {
        plan: HashMap<SocketAddr, Fake>,
        started: Mutex<Vec<(SocketAddr, Duration)>>,
        t0: Instant,
    }

    impl Net {
        fn new(plan: &[(&str, Fake)]) -> Net {
            Net {
                plan: plan.iter().map(|(a, f)| (addr(a), *f)).collect(),
                started: Mutex::new(Vec::new()),
                t0: Instant::now(),
            }
        }

        async fn connect(&self, to: SocketAddr) -> io::Result<SocketAddr> {
            self.started.lock().push((to, self.t0.elapsed()));
            let ms = Duration::from_millis;
            match self.plan[&to] {
                Fake::Blackhole => std::future::pending().await,
                Fake::Refuse(after) => {
                    tokio::time::sleep(ms(after)).await;
                    let e = io::Error::new(io::ErrorKind::ConnectionRefused, to.to_string());
                    Err(e)
                }
                Fake::Accept(after) => {
                    tokio::time::sleep(ms(after)).await;
                    Ok(to)
                }
            }
        }

        async fn race(&self, delay: Duration) -> Result<SocketAddr, String> {
            let mut addrs: Vec<_> = self.plan.keys().copied().collect();
            addrs.sort();
            connect(addrs, delay, |a| self.connect(a))
                .await
                .map_err(|e| {
                    let (a, e) = e.expect("an address");
                    format!("{a}: {e}")
                })
        }

        fn started(&self) -> Vec<(String, Duration)> {
            let started = self.started.lock();
            started.iter().map(|(a, t)| (a.to_string(), *t)).collect()
        }
    }

    #[test]
    fn families_alternate_ipv6_first_each_in_resolver_order() {
        let given = ["1.0.0.1:1", "1.0.0.2:1", "1.0.0.3:1", "[::1]:1", "[::2]:1"].map(addr);
        let want = ["[::1]:1", "1.0.0.1:1", "[::2]:1", "1.0.0.2:1", "1.0.0.3:1"].map(addr);
        assert_eq!(interleave(given), want);
        assert_eq!(interleave([addr("1.0.0.1:1")]), [addr("1.0.0.1:1")]);
    }

    #[tokio::test]
    async fn a_blackholed_address_delays_the_next_only_by_the_attempt_delay() {
        let net = Net::new(&[("[::1]:1", Fake::Blackhole), ("1.0.0.1:1", Fake::Accept(0))]);
        assert_eq!(net.race(ATTEMPT_DELAY).await, Ok(addr("1.0.0.1:1")));
        let started = net.started();
        assert_eq!(started[1].0, "1.0.0.1:1");
        let at = started[1].1;
        assert!(at >= ATTEMPT_DELAY && at < Duration::from_secs(3), "{at:?}");
    }

    #[tokio::test]
    async fn a_refused_address_moves_on_at_once() {
        let net = Net::new(&[("[::1]:1", Fake::Refuse(0)), ("1.0.0.1:1", Fake::Accept(0))]);
        // Were it to wait out the delay, the test would take a minute.
        let delay = Duration::from_secs(60);
        assert_eq!(net.race(delay).await, Ok(addr("1.0.0.1:1")));
        assert!(net.t0.elapsed() < delay / 2);
    }

    #[tokio::test]
    async fn the_first_to_connect_wins_even_if_started_later() {
        // [::1] answers after 2 s; 1.0.0.1, started 50 ms in, at once.
        let net = Net::new(&[
            ("[::1]:1", Fake::Accept(2000)),
            ("1.0.0.1:1", Fake::Accept(0)),
        ]);
        let delay = Duration::from_millis(50);
        assert_eq!(net.race(delay).await, Ok(addr("1.0.0.1:1")));
        assert_eq!(net.started().len(), 2);
    }

    #[tokio::test]
    async fn when_all_fail_the_error_is_the_last_failure() {
        let net = Net::new(&[
            ("[::1]:1", Fake::Refuse(300)),
            ("1.0.0.1:1", Fake::Refuse(0)),
            ("1.0.0.2:1", Fake::Refuse(0)),
        ]);
        // Both IPv4 addresses fail while [::1] still tries; it fails last.
        let delay = Duration::from_millis(20);
        assert_eq!(net.race(delay).await, Err("[::1]:1: [::1]:1".into()));
        let order: Vec<_> = net.started().into_iter().map(|(a, _)| a).collect();
        assert_eq!(order, ["[::1]:1", "1.0.0.1:1", "1.0.0.2:1"]);
    }

    #[tokio::test]
    async fn no_address_is_no_error_to_name() {
        let none: [SocketAddr; 0] = [];
        let won = connect(none, ATTEMPT_DELAY, |_| async { Ok(()) }).await;
        assert!(matches!(won, Err(None)));
    }

    /// Real sockets: nothing listens on [::1] (or there is no IPv6), 127.0.0.1 listens.
    #[tokio::test]
    async fn on_loopback_a_refused_ipv6_address_falls_back_to_ipv4_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
        let v4 = SocketAddr::from(([127, 0, 0, 1], port));
        let delay = Duration::from_secs(60);
        let tcp = connect([v4, v6], delay, tokio::net::TcpStream::connect).await;
        assert_eq!(tcp.unwrap().peer_addr().unwrap(), v4);
    }
}

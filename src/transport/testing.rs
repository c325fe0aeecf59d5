//! One fake transport for the tests of the engine and its workers, under
//! tokio's paused clock: it answers each heartbeat after a delay with the
//! status a script gives the device's n-th attempt, notes who sent what
//! when, and can make opening a connection cost the worker's thread time
//! ([`Fake::connect_cost`]) or take time ([`Fake::connect_delay`]).
//!
//! Given a [`SessionScript`] it is a transport with sessions shaped like
//! MQTT's: the worker opens each device's session with the device's
//! identity ([`Transport::connect`]), and every message then goes on a
//! session, the device's own (it checks); a message's acknowledgement
//! comes when the script says, and one that comes after its exchange gave
//! up arrives on the idle session later (inbound: so a session's
//! acknowledgements can come out of order); an idle session sends a
//! keep-alive when nothing went on it for the keep-alive interval; and the
//! far end closes a device's n-th session when the script says. Its
//! connections are numbers, so `Connections` can be tested with it too.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Connected, Exchange, HandBack, Identity, Idle, Outgoing, Reconnect, Transport};
use crate::stats::{Failure, Outcome, OutcomeClass};

/// One heartbeat (or retry) handed to the fake.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    /// The device's name and agent version, from the body.
    pub device: String,
    pub version: String,
    /// The connection it went on.
    pub conn: u32,
}

/// How the fake's sessions behave, for a session transport.
#[derive(Debug, Clone, Copy)]
pub struct SessionScript {
    /// A keep-alive is sent when nothing went on a session for this long.
    pub keepalive: Duration,
    /// How long the `n`-th message (from 1) on a session of `device`
    /// waits for its acknowledgement.
    pub ack: fn(device: &str, n: u32) -> Duration,
    /// An exchange gives up on its acknowledgement after this long (a
    /// timeout); the session stays open, and the acknowledgement, when it
    /// comes, is inbound.
    pub ack_timeout: Duration,
    /// How long after it opened the far end closes `device`'s `n`-th
    /// session (from 1), if it does.
    pub close: fn(device: &str, n: u32) -> Option<Duration>,
    /// An idle wait with nothing to do ends this long after the instant
    /// it was given (a transport whose timer is coarse).
    pub overstay: Duration,
    /// And this long after the worker's call for the session
    /// ([`HandBack`]), if the transport hears it at all.
    pub handback: Option<Duration>,
    /// How its devices reopen a lost session ([`Transport::reconnect`]).
    pub reconnect: Option<Reconnect>,
    /// Openings begun within this window (from and to, since the fake was
    /// made) are refused, as a restarting broker's: server unavailable.
    pub down: Option<(Duration, Duration)>,
    /// Its target's connect rate ([`Transport::connect_rate`]).
    pub connect_rate: Option<f64>,
    /// How many of a device's messages its session carries at once
    /// ([`Transport::window`]).
    pub window: u16,
}

impl Default for SessionScript {
    /// Sessions that acknowledge each message after 30 ms, keep alive
    /// every 30 s, are never closed by the far end and are not reopened.
    fn default() -> SessionScript {
        SessionScript {
            keepalive: Duration::from_secs(30),
            ack: |_, _| Duration::from_millis(30),
            ack_timeout: Duration::from_secs(1),
            close: |_, _| None,
            overstay: Duration::ZERO,
            handback: Some(Duration::ZERO),
            reconnect: None,
            down: None,
            connect_rate: None,
            window: 1,
        }
    }
}

/// One session, as the fake's far end saw it.
#[derive(Debug, Clone)]
pub struct Session {
    /// What it was opened with.
    pub identity: Identity,
    /// The device's n-th session (from 1).
    pub number: u32,
    pub opened_at: Instant,
    /// When each message went on it.
    pub messages: Vec<Instant>,
    /// The message numbers acknowledged, in the order the acknowledgements came.
    pub acked: Vec<u32>,
    /// When each keep-alive went.
    pub keepalives: Vec<Instant>,
    /// When each inbound message came.
    pub inbound: Vec<Instant>,
    /// Closed by the far end.
    pub closed: bool,
    /// Ended by its device as it went offline: when, and whether with a
    /// goodbye ([`Transport::close`]).
    pub ended: Option<(Instant, bool)>,
    /// When anything last went on it.
    last_sent: Instant,
    /// Acknowledgements still to come after their exchange gave up: when,
    /// and of which message.
    late: Vec<(Instant, u32)>,
    close_at: Option<Instant>,
}

/// What the fake noted, shared by its clones.
#[derive(Default)]
pub(crate) struct Notes {
    calls: Mutex<Vec<Call>>,
    attempts: Mutex<HashMap<String, usize>>,
    opened: AtomicUsize,
    concurrent: AtomicUsize,
    most_concurrent: AtomicUsize,
    next_conn: AtomicU32,
    sessions: Mutex<BTreeMap<u32, Session>>,
    /// Every identity a connection was opened with.
    identities: Mutex<Vec<Identity>>,
}

/// The fake transport (module docs). Clones share their notes.
#[derive(Clone)]
pub struct Fake {
    /// How long an answer (or an acknowledgement the script does not set) takes.
    pub delay: Duration,
    /// The worker's time opening a connection takes before it waits on
    /// anything (a real one's socket calls and TLS handshake run on the
    /// worker's thread): the paused clock moves on by that much, as a busy
    /// thread's would, when the opening is first polled.
    pub connect_cost: Duration,
    /// How long opening a connection waits (a handshake's round trips).
    pub connect_delay: Duration,
    /// The status of a device's n-th attempt (from 1).
    pub answer: fn(usize) -> u16,
    /// The answer says it arrived this long before the exchange ended (a
    /// kernel receive stamp), if set.
    pub arrived_early: Option<Duration>,
    /// Sessions shaped like MQTT's (module docs); `None`: connections
    /// are anyone's, opened by the exchange that needs one, as HTTP's.
    pub session: Option<SessionScript>,
    /// Every session's opening is refused with this (after its delay), as
    /// a broker refuses a CONNECT; `None`: sessions open.
    pub refuse: Option<Outcome>,
    /// What it noted, shared by its clones (read with the methods below).
    pub(crate) notes: Arc<Notes>,
    /// When it was made (its script's times are from then).
    pub epoch: Instant,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake::answering(|_| 200)
    }
}

/// Moves the paused clock on by `d` now, from synchronous code: the first
/// poll of `tokio::time::advance` does it (the rest only yields).
pub fn spend(d: Duration) {
    let mut advance = std::pin::pin!(tokio::time::advance(d));
    let _ = advance.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

impl Fake {
    /// A fake that answers a device's n-th attempt with `answer(n)`, at once.
    pub fn answering(answer: fn(usize) -> u16) -> Fake {
        Fake {
            delay: Duration::ZERO,
            connect_cost: Duration::ZERO,
            connect_delay: Duration::ZERO,
            answer,
            arrived_early: None,
            session: None,
            refuse: None,
            notes: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// A session transport (module docs) that acknowledges after `delay`
    /// unless `script` says otherwise.
    pub fn with_sessions(script: SessionScript) -> Fake {
        Fake { session: Some(script), ..Fake::default() }
    }

    /// Every heartbeat handed to it, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.notes.calls.lock().unwrap().clone()
    }

    /// When each heartbeat was handed to it.
    pub fn call_times(&self) -> Vec<Instant> {
        self.notes.calls.lock().unwrap().iter().map(|c| c.at).collect()
    }

    /// Each device's call times, in ms since `t0`.
    pub fn times_by_device(&self, t0: Instant) -> BTreeMap<String, Vec<u128>> {
        let mut out: BTreeMap<String, Vec<u128>> = BTreeMap::new();
        for c in self.notes.calls.lock().unwrap().iter() {
            out.entry(c.device.clone()).or_default().push((c.at - t0).as_millis());
        }
        out
    }

    /// How many connections (or sessions) were opened.
    pub fn connects(&self) -> usize {
        self.notes.opened.load(Ordering::SeqCst)
    }

    /// The most exchanges it had in flight at once.
    pub fn most_concurrent(&self) -> usize {
        self.notes.most_concurrent.load(Ordering::SeqCst)
    }

    /// Every identity [`Transport::connect`] was given, in order.
    pub fn identities(&self) -> Vec<Identity> {
        self.notes.identities.lock().unwrap().clone()
    }

    /// Every session opened, by connection number.
    pub fn opened_sessions(&self) -> BTreeMap<u32, Session> {
        self.notes.sessions.lock().unwrap().clone()
    }
}

impl Transport for Fake {
    type Conn = u32;

    fn exchange(&self, conn: Option<u32>, outgoing: Outgoing) -> impl Future<Output = Exchange<u32>> + Send + 'static {
        let body = outgoing.body;
        let summary = crate::sagemaker_edge::validate::inspect(&body).expect("a valid body");
        let device = summary.device_name.to_string();
        let n = {
            let mut attempts = self.notes.attempts.lock().unwrap();
            let n = attempts.entry(device.clone()).or_default();
            *n += 1;
            *n
        };
        let now = Instant::now();
        // A session transport's exchange is always given its device's
        // session; otherwise one without a connection opens one.
        let (id, connect) = match (conn, self.session) {
            (Some(id), _) => (id, None),
            (None, Some(_)) => panic!("{device}: a session transport's exchange was given no session"),
            (None, None) => {
                self.notes.opened.fetch_add(1, Ordering::SeqCst);
                (self.notes.next_conn.fetch_add(1, Ordering::SeqCst), Some(self.connect_cost))
            }
        };
        let call = Call { at: now, device: device.clone(), version: summary.agent_version.to_string(), conn: id };
        self.notes.calls.lock().unwrap().push(call);
        let concurrent = self.notes.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.notes.most_concurrent.fetch_max(concurrent, Ordering::SeqCst);
        // On a session: the message's number and when its acknowledgement comes.
        let ack = self.session.map(|script| {
            let mut sessions = self.notes.sessions.lock().unwrap();
            let s = sessions.get_mut(&id).expect("a session the fake opened");
            assert_eq!(s.identity.device, device, "a device's message goes on its own session");
            assert!(!s.closed, "{device}: a message on a session the far end closed");
            s.messages.push(now);
            s.last_sent = now;
            let number = s.messages.len() as u32;
            (number, now + (script.ack)(&device, number), script.ack_timeout, s.close_at)
        });
        let (status, delay, early, notes) = ((self.answer)(n), self.delay, self.arrived_early, self.notes.clone());
        async move {
            // Connecting: on the worker's thread, when it first polls.
            if let Some(cost) = connect.filter(|c| !c.is_zero()) {
                spend(cost);
            }
            let outcome = match ack {
                None => {
                    tokio::time::sleep(delay).await;
                    Outcome::Status(status)
                }
                // The far end closes the session while the message awaits
                // its acknowledgement: it fails, and the session is gone.
                Some((_, at, timeout, Some(close))) if close < at.min(now + timeout) => {
                    tokio::time::sleep_until(close).await;
                    notes.sessions.lock().unwrap().get_mut(&id).expect("open").closed = true;
                    notes.concurrent.fetch_sub(1, Ordering::SeqCst);
                    return Exchange::failed(Failure::Io);
                }
                Some((number, at, timeout, _)) if at <= now + timeout => {
                    tokio::time::sleep_until(at).await;
                    notes.sessions.lock().unwrap().get_mut(&id).expect("open").acked.push(number);
                    // An acknowledgement, as MQTT 3.1.1's PUBACK: no code.
                    Outcome::Answered { class: OutcomeClass::Ok, code: None }
                }
                Some((number, at, timeout, _)) => {
                    tokio::time::sleep_until(now + timeout).await;
                    notes.sessions.lock().unwrap().get_mut(&id).expect("open").late.push((at, number));
                    Outcome::Failed(Failure::Timeout)
                }
            };
            notes.concurrent.fetch_sub(1, Ordering::SeqCst);
            Exchange {
                outcome,
                conn: Some(id),
                retry_after: None,
                connected: None,
                answered_at: early.map(|e| (Instant::now() - e).into_std()),
            }
        }
    }

    fn connect(&self, identity: Identity) -> impl Future<Output = Result<(u32, Connected), Outcome>> + Send + 'static {
        let (cost, delay, script, notes) = (self.connect_cost, self.connect_delay, self.session, self.notes.clone());
        let (refuse, epoch) = (self.refuse, self.epoch);
        async move {
            // Noted when the opening begins (a device's reopening is asked
            // for before its delay).
            notes.identities.lock().unwrap().push(identity.clone());
            if !cost.is_zero() {
                spend(cost);
            }
            let begun = Instant::now().duration_since(epoch);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(refused) = refuse {
                return Err(refused);
            }
            if let Some((from, to)) = script.and_then(|s| s.down)
                && (from..to).contains(&begun)
            {
                return Err(Outcome::Answered {
                    class: crate::stats::mqtt_class(3),
                    code: Some(crate::stats::Code::Mqtt(3)),
                });
            }
            notes.opened.fetch_add(1, Ordering::SeqCst);
            let id = notes.next_conn.fetch_add(1, Ordering::SeqCst);
            if let Some(script) = script {
                let now = Instant::now();
                let mut sessions = notes.sessions.lock().unwrap();
                let number = 1 + sessions.values().filter(|s| s.identity.device == identity.device).count() as u32;
                let close_at = (script.close)(&identity.device, number).map(|after| now + after);
                let session = Session {
                    identity,
                    number,
                    opened_at: now,
                    messages: Vec::new(),
                    acked: Vec::new(),
                    keepalives: Vec::new(),
                    inbound: Vec::new(),
                    closed: false,
                    ended: None,
                    last_sent: now,
                    late: Vec::new(),
                    close_at,
                };
                sessions.insert(id, session);
            }
            Ok((id, Connected { tls_handshake: None, session: Some(delay + cost) }))
        }
    }

    fn sessions(&self) -> bool {
        self.session.is_some()
    }

    fn idles(&self) -> bool {
        self.session.is_some()
    }

    fn reconnect(&self) -> Option<Reconnect> {
        self.session.and_then(|s| s.reconnect)
    }

    fn connect_rate(&self) -> Option<f64> {
        self.session.and_then(|s| s.connect_rate)
    }

    fn share(&self, conn: &u32) -> Option<u32> {
        self.session.is_some_and(|s| s.window > 1).then_some(*conn)
    }

    fn window(&self, _conn: &u32) -> u16 {
        self.session.map_or(1, |s| s.window)
    }

    fn is_closed(&self, conn: &u32) -> bool {
        self.notes.sessions.lock().unwrap().get(conn).is_some_and(|s| s.closed)
    }

    fn close(&self, conn: u32, goodbye: bool) -> impl Future<Output = ()> + Send + 'static {
        if let Some(s) = self.notes.sessions.lock().unwrap().get_mut(&conn) {
            s.ended = Some((Instant::now(), goodbye));
        }
        std::future::ready(())
    }

    fn idle(
        &self,
        conn: u32,
        until: Instant,
        handback: HandBack,
    ) -> impl Future<Output = (Option<u32>, Idle)> + Send + 'static {
        let script = self.session.expect("only a session transport is asked to idle");
        let notes = self.notes.clone();
        // What comes first: a close, an acknowledgement, a keep-alive (in
        // that order at one instant), or else the wait's end.
        let (at, what) = {
            let sessions = notes.sessions.lock().unwrap();
            let s = sessions.get(&conn).expect("a session the fake opened");
            let late = s.late.iter().map(|(at, _)| *at).min();
            [
                s.close_at.map(|at| (at, Idle::Closed(crate::transport::Closed::Disconnect(None)))),
                late.map(|at| (at, Idle::Inbound)),
                Some((s.last_sent + script.keepalive, Idle::Keepalive)),
            ]
            .into_iter()
            .flatten()
            .fold((until + script.overstay, Idle::Until), |first, next| {
                if next.0 <= first.0 && (next.0 < first.0 || first.1 == Idle::Until) { next } else { first }
            })
        };
        async move {
            // The worker's call, if heard, ends the wait `handback` after
            // it, unless the first of the others comes before that.
            let what = match script.handback {
                None => {
                    tokio::time::sleep_until(at).await;
                    what
                }
                Some(after) => {
                    tokio::pin!(handback);
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => what,
                        () = &mut handback => {
                            let back = Instant::now() + after;
                            if what != Idle::Until && at <= back {
                                tokio::time::sleep_until(at).await;
                                what
                            } else {
                                tokio::time::sleep_until(back).await;
                                Idle::Until
                            }
                        }
                    }
                }
            };
            let now = Instant::now();
            let mut sessions = notes.sessions.lock().unwrap();
            let s = sessions.get_mut(&conn).expect("a session the fake opened");
            match what {
                Idle::Closed(why) => {
                    s.closed = true;
                    return (None, Idle::Closed(why));
                }
                Idle::Inbound => {
                    let i = s.late.iter().enumerate().min_by_key(|(_, (at, _))| *at).map(|(i, _)| i).expect("one due");
                    let (_, number) = s.late.remove(i);
                    s.acked.push(number);
                    s.inbound.push(now);
                }
                Idle::Keepalive => {
                    s.keepalives.push(now);
                    s.last_sent = now;
                }
                Idle::Until => {}
            }
            (Some(conn), what)
        }
    }
}

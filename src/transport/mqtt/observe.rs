//! End-to-end delivery (`[fleets.mqtt] observe = true`): fleetstorm's own
//! subscriber session on a fleet's topics, which times each message from
//! its intended time to its delivery and counts what came, once or more.
//!
//! An observed message carries its intended time (MQTT 5's user property
//! `fleetstorm-intended`: this process's instance, then the intended time
//! in nanoseconds since the UNIX epoch); the observer subtracts it from
//! the wall clock when the message arrives. Sender and observer are one
//! process, so one clock: no skew to correct. A message is known by its
//! topic (its device's) and its intended time, which no two of a device's
//! messages share; one seen again is a duplicate. Messages of another
//! process (another shard, another run on the same broker) carry another
//! instance and are counted apart, never as this run's.
//!
//! What was lost is what the broker took (acknowledged at QoS 1, written
//! at QoS 0) less what was delivered, known only when the run ends; the
//! observer waits for that many deliveries, or until none came for a
//! while ([`Observer::finish`]).
//!
//! The observer opens its session as a device would (the fleet's first
//! device's login, a client id of its own), before the fleet's first
//! message, and subscribes at QoS 1 so that the broker holds nothing back
//! it would redeliver to a QoS 1 subscriber.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::codec::Inbound;
use super::{MqttEndpoint, Read, open, subscribe};
use crate::stats::{Delivery, Outcome};
use crate::transport::Identity;

/// One fleet's observer, running.
pub struct Observer {
    pub fleet: String,
    delivered: Arc<AtomicU64>,
    arrived: Arc<Notify>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Watched>,
}

/// What the observer's session saw, before the run's measured part is
/// known (a warm-up's messages are delivered too, and left out after).
#[derive(Default)]
struct Watched {
    /// Each message delivered: its intended time, and its latency (µs).
    delivered: Vec<(u64, u64)>,
    /// The intended time of each message delivered again.
    duplicates: Vec<u64>,
    foreign: u64,
    broken: bool,
}

/// What an observer knows a message by: its topic's hash and its
/// intended time.
type Seen = HashSet<(u64, u64)>;

/// This process's instance, as observed messages carry it: random, so
/// that two processes (shards, runs) on one broker tell theirs apart.
pub fn instance() -> u64 {
    static INSTANCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *INSTANCE.get_or_init(rand::random)
}

/// What an observed message carries: the instance and its intended time.
pub fn stamp(intended_epoch_ns: u64) -> String {
    format!("{:x}/{intended_epoch_ns}", instance())
}

/// Nanoseconds since the UNIX epoch, now.
pub fn epoch_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Observer {
    /// Opens `fleet`'s observer on `endpoint` (an MQTT 5 target) and
    /// subscribes it to `filter`: ready when this returns, so that it sees
    /// the fleet's first message. `login` is the fleet's first device's.
    pub async fn start(
        endpoint: Arc<MqttEndpoint>,
        fleet: &str,
        filter: &str,
        login: (Option<String>, Option<String>),
    ) -> Result<Observer, String> {
        let identity = Identity {
            device: format!("fleetstorm-observer-{:x}-{fleet}", instance() & 0xffff_ffff),
            username: login.0,
            password: login.1,
            ..Identity::default()
        };
        let opened = tokio::time::timeout(endpoint.timeout, async {
            let (conn, _) = open(&endpoint, identity).await?;
            subscribe(&endpoint, &conn.0, filter).await?;
            Ok::<_, Outcome>(conn)
        })
        .await;
        let errors =
            || endpoint.first_errors.iter().filter_map(|(_, e)| e.get().cloned()).collect::<Vec<_>>().join("; ");
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(outcome)) => {
                return Err(format!(
                    "fleet {fleet:?}'s observer could not subscribe to {filter}: {outcome:?} ({})",
                    errors()
                ));
            }
            Err(_) => return Err(format!("fleet {fleet:?}'s observer could not open its session within the timeout")),
        };
        let delivered = Arc::new(AtomicU64::new(0));
        let arrived = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = {
            let (delivered, arrived, stop) = (delivered.clone(), arrived.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Seen::new();
                let mut counts = Watched::default();
                let hasher = std::collections::hash_map::RandomState::new();
                loop {
                    let read = tokio::select! {
                        () = stop.cancelled() => break,
                        read = conn.0.next() => read,
                    };
                    let packet = match read {
                        Read::Packet(p) => p,
                        Read::Closed(_) | Read::Failed(_) => {
                            counts.broken = true;
                            break;
                        }
                    };
                    if conn.0.answer(&packet).await.is_err() {
                        counts.broken = true;
                        break;
                    }
                    let Inbound::Publish(message) = packet else { continue };
                    let now = epoch_ns();
                    let Some((instance_of, intended)) = message.stamp.as_deref().and_then(parse) else {
                        counts.foreign += 1;
                        continue;
                    };
                    if instance_of != instance() {
                        counts.foreign += 1;
                        continue;
                    }
                    if seen.insert((hasher.hash_one(&message.topic), intended)) {
                        counts.delivered.push((intended, now.saturating_sub(intended) / 1_000));
                        delivered.fetch_add(1, Ordering::Relaxed);
                        arrived.notify_one();
                    } else {
                        counts.duplicates.push(intended);
                    }
                }
                counts
            })
        };
        Ok(Observer { fleet: fleet.to_string(), delivered, arrived, stop, task })
    }

    /// Ends the observation once `expected` messages intended from
    /// `from_epoch_ns` on (the run's measured part) were delivered, or
    /// when none came for `patience`: what it saw of those.
    pub async fn finish(self, expected: u64, from_epoch_ns: u64, patience: Duration) -> Delivery {
        // Deliveries of a warm-up count toward the wait, which is ended
        // by patience in the worst case: never early.
        while self.delivered.load(Ordering::Relaxed) < expected {
            if tokio::time::timeout(patience, self.arrived.notified()).await.is_err() {
                break;
            }
        }
        self.stop.cancel();
        let watched = self.task.await.unwrap_or_default();
        let mut delivery =
            Delivery { expected, foreign: watched.foreign, broken: watched.broken, ..Delivery::default() };
        for (_, latency_us) in watched.delivered.iter().filter(|(intended, _)| *intended >= from_epoch_ns) {
            delivery.delivered += 1;
            crate::stats::record(&mut delivery.latency, *latency_us);
        }
        delivery.duplicates = watched.duplicates.iter().filter(|i| **i >= from_epoch_ns).count() as u64;
        delivery
    }
}

/// A stamp's instance and intended time.
fn parse(stamp: &str) -> Option<(u64, u64)> {
    let (instance, intended) = stamp.split_once('/')?;
    Some((u64::from_str_radix(instance, 16).ok()?, intended.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_carries_this_process_s_instance_and_the_intended_time() {
        let s = stamp(1_765_000_000_123_456_789);
        assert_eq!(parse(&s), Some((instance(), 1_765_000_000_123_456_789)));
        for bad in ["", "x/1", "ab", "ab/-1", "ab/1/2"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

//! The settler's bookkeeping under arbitrary interleavings: every delivered message ends settled exactly once
//! (ack, NAK, or Term after its dead letter is stored), never acked unless committed, never terminated without a
//! stored dead letter, and the room it reports comes back in full.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::dlq::{DlqClass, Origin};

fn rules(max_deliver: i64) -> Rules {
    Rules {
        stream: "telemetry".into(),
        identity: Arc::from("events"),
        ack_wait: Duration::from_secs(30),
        max_deliver,
        nak_delay: Duration::from_secs(1),
        nak_delay_max: Duration::from_secs(60),
        max_messages: 1000,
        max_bytes: 1 << 30,
    }
}

fn arrival(n: u64, delivered: i64) -> Arrival {
    Arrival {
        reply: format!("$JS.ACK.events.c.{delivered}.{n}.{n}.1.0").into(),
        subject: "telemetry.x".into(),
        payload: Bytes::from(vec![b'x'; 10]),
        headers: None,
        sequence: n,
        delivered,
        published_ns: 0,
        replay_of: None,
        ingested: n % 3 == 0,
    }
}

/// What the reader, a writer, the clock or the DLQ does next.
#[derive(Debug, Clone)]
enum Op {
    /// A message arrives and goes into a batch (or is undecodable).
    Arrive {
        delivered: i64,
        decodable: bool,
    },
    /// A writer reports on the message at this position among those in the pipeline.
    Commit(usize),
    Reject(usize),
    Retry(usize),
    Release(usize),
    /// The DLQ answers the oldest publish in flight.
    Stored,
    Failed,
    /// Time passes.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1i64..8, any::<bool>()).prop_map(|(delivered, ok)| Op::Arrive { delivered, decodable: ok || delivered % 2 == 0 }),
        3 => (0usize..64).prop_map(Op::Commit),
        1 => (0usize..64).prop_map(Op::Reject),
        1 => (0usize..64).prop_map(Op::Retry),
        1 => (0usize..64).prop_map(Op::Release),
        2 => Just(Op::Stored),
        1 => Just(Op::Failed),
        1 => (1u64..40).prop_map(Op::Tick),
    ]
}

/// The verdicts JetStream got, by reply subject.
#[derive(Default, Debug)]
struct Server {
    finals: HashMap<String, Vec<&'static str>>,
    stored: Vec<String>,
    in_flight: Vec<(Ticket, String)>,
}

impl Server {
    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Ack { reply, .. } => self.finals.entry(reply.to_string()).or_default().push("ack"),
                Action::Nak { reply, .. } => self.finals.entry(reply.to_string()).or_default().push("nak"),
                Action::Term { reply, .. } => {
                    assert!(
                        self.stored.contains(&reply.to_string()),
                        "Term before its dead letter was stored: {reply}"
                    );
                    self.finals.entry(reply.to_string()).or_default().push("term");
                }
                Action::Progress { reply } => {
                    assert!(!self.finals.contains_key(reply.as_str()), "progress for a settled message: {reply}");
                }
                Action::Publish { ticket, letter } => {
                    let reply =
                        format!("$JS.ACK.events.c.{}.{}.{}.1.0", letter.delivered, letter.sequence, letter.sequence);
                    self.in_flight.push((ticket, reply));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_message_is_settled_exactly_once_whatever_the_interleaving(
        ops in prop::collection::vec(op(), 0..300),
        max_deliver in prop_oneof![Just(-1i64), 1i64..6],
    ) {
        let mut book = Book::new(rules(max_deliver));
        let mut server = Server::default();
        let mut now = Instant::now();
        let mut in_pipeline: Vec<(Ticket, String)> = Vec::new();
        let mut committed: Vec<String> = Vec::new();
        let mut delivered_replies: Vec<String> = Vec::new();
        let mut n = 0u64;
        for op in ops {
            match op {
                Op::Arrive { delivered, decodable } => {
                    n += 1;
                    let a = arrival(n, delivered);
                    let reply = a.reply.to_string();
                    delivered_replies.push(reply.clone());
                    if decodable {
                        let t = book.hold(a, 100, now);
                        in_pipeline.push((t, reply));
                    } else {
                        book.hold_letter(a, DlqClass::Decode, "bad".into(), now);
                    }
                }
                Op::Commit(i) | Op::Reject(i) | Op::Retry(i) | Op::Release(i) if !in_pipeline.is_empty() => {
                    let (t, reply) = in_pipeline.remove(i % in_pipeline.len());
                    match op {
                        Op::Commit(_) => { book.commit(t, Some("t".into()), 0); committed.push(reply); }
                        Op::Reject(_) => book.dead_letter(t, DlqClass::Rejected, "refused".into(), now),
                        Op::Retry(_) => book.retry(t, "deadlock", now),
                        _ => book.release(t),
                    }
                }
                Op::Stored | Op::Failed if !server.in_flight.is_empty() => {
                    let (t, reply) = server.in_flight.remove(0);
                    if matches!(op, Op::Stored) {
                        server.stored.push(reply);
                        book.letter_stored(t, now);
                    } else {
                        book.letter_failed(t, now);
                    }
                }
                Op::Tick(secs) => {
                    now += Duration::from_secs(secs);
                    book.tick(now);
                }
                _ => {}
            }
            server.apply(book.take_actions());
            prop_assert!(book.room().messages + book.held() == 1000);
        }
        // Shutdown: the writers give back what they still hold, the book closes, the DLQ answers what is in flight.
        for (t, _) in in_pipeline.drain(..) {
            book.release(t);
        }
        book.close();
        server.apply(book.take_actions());
        while !server.in_flight.is_empty() {
            let (t, reply) = server.in_flight.remove(0);
            server.stored.push(reply);
            book.letter_stored(t, now);
            server.apply(book.take_actions());
        }
        prop_assert!(book.is_empty(), "held after close: {}", book.held());
        prop_assert_eq!(book.room(), Room { messages: 1000, bytes: 1 << 30 });
        for reply in &delivered_replies {
            let finals = server.finals.get(reply).cloned().unwrap_or_default();
            prop_assert_eq!(finals.len(), 1, "{} settled {:?}", reply, finals);
            if finals[0] == "ack" {
                prop_assert!(committed.contains(reply), "acked without a commit: {}", reply);
            }
        }
        prop_assert_eq!(server.finals.len(), delivered_replies.len());
    }
}

#[test]
fn a_message_on_its_last_delivery_is_dead_lettered_not_naked() {
    let mut book = Book::new(rules(3));
    let now = Instant::now();
    let early = book.hold(arrival(1, 2), 10, now);
    let last = book.hold(arrival(2, 3), 10, now);
    book.retry(early, "deadlock", now);
    book.retry(last, "deadlock", now);
    let actions = book.take_actions();
    assert!(matches!(&actions[0], Action::Nak { delay, .. } if *delay == Duration::from_secs(2)));
    match &actions[1] {
        Action::Publish { letter, .. } => {
            assert_eq!(letter.class, DlqClass::MaxDeliver);
            assert!(letter.reason.contains("last allowed delivery (3 of max_deliver 3)"), "{}", letter.reason);
            assert_eq!(letter.origin.header(), "events:2:0");
            assert_eq!(letter.msg_id, "events:2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dead_letter_that_cannot_be_stored_is_retried_with_backoff_and_the_message_kept_alive() {
    let mut book = Book::new(rules(5));
    let start = Instant::now();
    let t = book.hold_letter(arrival(1, 1), DlqClass::Decode, "bad".into(), start);
    assert!(matches!(book.take_actions()[..], [Action::Publish { .. }]));
    book.letter_failed(t, start);
    assert!(book.take_actions().is_empty(), "not again at once");
    book.tick(start + Duration::from_millis(500));
    assert!(book.take_actions().is_empty(), "the backoff is 1 s");
    book.tick(start + Duration::from_millis(1100));
    assert!(matches!(book.take_actions()[..], [Action::Publish { .. }]));
    book.letter_failed(t, start + Duration::from_secs(1));
    // Half ack_wait later it is still held: JetStream hears that it is being worked on.
    book.tick(start + Duration::from_secs(16));
    let actions = book.take_actions();
    assert!(actions.iter().any(|a| matches!(a, Action::Progress { .. })), "{actions:?}");
    assert!(actions.iter().any(|a| matches!(a, Action::Publish { .. })), "{actions:?}");
    assert_eq!((book.held(), book.letters()), (1, 1));
    book.letter_stored(t, start + Duration::from_secs(16));
    assert!(matches!(book.take_actions()[..], [Action::Term { .. }]));
    assert!(book.is_empty());
}

#[test]
fn held_messages_get_progress_every_half_ack_wait_wherever_they_are() {
    let mut book = Book::new(rules(5));
    let start = Instant::now();
    let _queued = book.hold(arrival(1, 1), 10, start);
    let _writing = book.hold(arrival(2, 1), 10, start + Duration::from_secs(5));
    book.tick(start + Duration::from_secs(14));
    assert!(book.take_actions().is_empty(), "nothing is 15 s old yet");
    book.tick(start + Duration::from_secs(15));
    assert_eq!(book.take_actions().len(), 1);
    book.tick(start + Duration::from_secs(20));
    assert_eq!(book.take_actions().len(), 1, "the second one, 15 s after it arrived");
    book.tick(start + Duration::from_secs(29));
    assert!(book.take_actions().is_empty(), "the first had its progress 14 s ago");
    book.tick(start + Duration::from_secs(30));
    assert_eq!(book.take_actions().len(), 1);
}

#[test]
fn room_counts_messages_and_bytes_until_they_settle() {
    let mut r = rules(5);
    r.max_messages = 3;
    r.max_bytes = 1000;
    let mut book = Book::new(r);
    let now = Instant::now();
    let a = book.hold(arrival(1, 1), 600, now);
    assert_eq!(book.room(), Room { messages: 2, bytes: 400 });
    let _b = book.hold(arrival(2, 1), 600, now);
    assert_eq!(book.room(), Room { messages: 1, bytes: 0 });
    book.commit(a, None, 0);
    assert_eq!(book.room(), Room { messages: 2, bytes: 400 });
}

#[test]
fn a_replay_keeps_its_originals_identity_in_its_dead_letter() {
    let mut book = Book::new(rules(5));
    let mut a = arrival(9, 1);
    a.replay_of = Some(Box::new(Origin { stream: "events.1".into(), sequence: 3, published_ns: 77 }));
    book.hold_letter(a, DlqClass::Decode, "still bad".into(), Instant::now());
    match &book.take_actions()[0] {
        Action::Publish { letter, .. } => {
            assert_eq!(letter.origin.header(), "events.1:3:77");
            assert_eq!(letter.msg_id, "events:9", "the letter's own id is this delivery's");
        }
        other => panic!("{other:?}"),
    }
}

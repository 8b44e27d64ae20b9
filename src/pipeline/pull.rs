//! Pull requests of the reader's own: one request at a time, for exactly as many messages and bytes as the
//! stream may still hold. Every message JetStream sends is then read at once and handed to the settler, so no
//! delivered message waits unheld in a buffer (where in-progress acks cannot reach it) while the database is slow.
//! Also the `$JS.ACK.…` reply subject's metadata (delivery count, sequences, publish time).
//!
//! Uses only async-nats.

use std::time::Duration;

use async_nats::{Client, StatusCode, Subscriber};
use futures::StreamExt;
use tokio::time::Instant;

/// How long one pull request waits for messages before JetStream ends it (408); a new one follows at once.
pub const EXPIRES: Duration = Duration::from_secs(5);

/// Why pulling cannot go on: the stream task restarts (and sets its consumer up again).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Subscribing to the inbox or sending the request failed (NATS is disconnected).
    #[error("sending a pull request: {0}")]
    Request(String),
    /// JetStream refused the request or the consumer is gone.
    #[error("JetStream ended the pull: {0}")]
    Refused(String),
}

/// Sends pull requests for one durable consumer.
#[derive(Debug, Clone)]
pub struct Puller {
    client: Client,
    subject: String,
}

impl Puller {
    /// Pulls from `consumer` of JetStream stream `stream` (JetStream API prefix `$JS.API`).
    pub fn new(client: Client, stream: &str, consumer: &str) -> Self {
        Puller { client, subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}") }
    }

    /// Asks for up to `batch` messages and `max_bytes` bytes, waiting up to [`EXPIRES`] for them.
    pub async fn request(&self, batch: usize, max_bytes: usize) -> Result<Pull, PullError> {
        let inbox = self.client.new_inbox();
        let subscriber = self.client.subscribe(inbox.clone()).await.map_err(|e| PullError::Request(e.to_string()))?;
        let body = format!(r#"{{"batch":{batch},"max_bytes":{max_bytes},"expires":{}}}"#, EXPIRES.as_nanos());
        self.client
            .publish_with_reply(self.subject.clone(), inbox, body.into())
            .await
            .map_err(|e| PullError::Request(e.to_string()))?;
        // JetStream answers 408 when the request expires; a few seconds more cover a lost answer.
        Ok(Pull { subscriber, left: batch, received: 0, deadline: Instant::now() + EXPIRES + Duration::from_secs(5) })
    }
}

/// One pull request's messages.
#[derive(Debug)]
pub struct Pull {
    subscriber: Subscriber,
    left: usize,
    received: usize,
    deadline: Instant,
}

impl Pull {
    /// The next message, or `None` once this request is over (all delivered, expired, or ended by JetStream for
    /// a reason that a new request does not share). Cancel-safe: no message is lost if the future is dropped.
    pub async fn next(&mut self) -> Result<Option<async_nats::Message>, PullError> {
        while self.left > 0 {
            let message = tokio::select! {
                m = self.subscriber.next() => m,
                _ = tokio::time::sleep_until(self.deadline) => return Ok(None),
            };
            let Some(message) = message else { return Ok(None) };
            match message.status {
                None | Some(StatusCode::OK) => {
                    self.left -= 1;
                    self.received += 1;
                    return Ok(Some(message));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                // No messages (404) or the request expired (408): this request is done.
                Some(StatusCode::NOT_FOUND) | Some(StatusCode::TIMEOUT) => return Ok(None),
                Some(StatusCode::REQUEST_TERMINATED) => {
                    let description = message.description.unwrap_or_default();
                    return match description.as_str() {
                        "Consumer Deleted" | "Consumer is push based" => Err(PullError::Refused(description)),
                        d if d.starts_with("Exceeded MaxRequest") => Err(PullError::Refused(description)),
                        // Max bytes reached, a leader change, a server shutting down: ask again.
                        _ => Ok(None),
                    };
                }
                Some(StatusCode::NO_RESPONDERS) => {
                    return Err(PullError::Refused("no responders (the consumer or JetStream is unavailable)".into()));
                }
                Some(status) => {
                    let description = message.description.unwrap_or_default();
                    return Err(PullError::Refused(format!("status {status}: {description}")));
                }
            }
        }
        Ok(None)
    }

    /// The next message if it arrives within `quiet` (what is still on the wire when the reader stops).
    pub async fn trailing(&mut self, quiet: Duration) -> Option<async_nats::Message> {
        tokio::time::timeout(quiet, self.next()).await.ok().and_then(Result::ok).flatten()
    }
}

/// What a JetStream reply subject (`$JS.ACK.…`) says about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times it has been delivered (1 the first time).
    pub delivered: i64,
    /// Its sequence in the stream.
    pub stream_sequence: u64,
    /// The consumer's delivery sequence (grows with every delivery of one consumer).
    pub consumer_sequence: u64,
    /// When JetStream stored it, in nanoseconds since the epoch.
    pub published_ns: i128,
}

/// Parses a `$JS.ACK.` reply subject: the 7-token form (`<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`)
/// or the 9+-token form with domain and account hash in front (ADR-15).
pub fn parse_reply(reply: &str) -> Option<Delivery> {
    let rest = reply.strip_prefix("$JS.ACK.")?;
    let tokens: Vec<&str> = rest.splitn(12, '.').collect();
    let t = match tokens.len() {
        7 => &tokens[2..],
        n if n >= 9 => &tokens[4..],
        _ => return None,
    };
    Some(Delivery {
        delivered: t.first()?.parse().ok()?,
        stream_sequence: t.get(1)?.parse().ok()?,
        consumer_sequence: t.get(2)?.parse().ok()?,
        published_ns: t.get(3)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_reply_subject_forms_parse() {
        let want = Delivery {
            delivered: 2,
            stream_sequence: 41,
            consumer_sequence: 7,
            published_ns: 1_700_000_000_123_456_789,
        };
        assert_eq!(parse_reply("$JS.ACK.events.dbew.2.41.7.1700000000123456789.0"), Some(want));
        assert_eq!(parse_reply("$JS.ACK._.ACCHASH.events.dbew.2.41.7.1700000000123456789.0.tok"), Some(want));
        assert_eq!(parse_reply("$JS.ACK.hub.ACCHASH.events.dbew.2.41.7.1700000000123456789.0"), Some(want));
        for bad in ["", "_INBOX.x", "$JS.ACK.a.b.c", "$JS.ACK.events.dbew.x.41.7.1.0"] {
            assert_eq!(parse_reply(bad), None, "{bad}");
        }
    }
}

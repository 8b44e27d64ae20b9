//! What the daemon remembers in the database about messages, beside their rows: the idempotency ledger (tables
//! without a key of their own record each committed message there, in the same transaction as its rows) and
//! the incarnations of each JetStream stream, which make a message's identity survive a stream being deleted
//! and created again.
//!
//! Uses only the pool ([`crate::db`]) and SQL quoting ([`crate::sql`]).

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::db::WriteError;
use crate::sql::qualified;

/// The ledger table: (stream identity, table, sequence) of every committed message of a keyless table.
pub const LEDGER: &str = "db_event_writer_ledger";
/// The incarnations table: (stream, creation time) → epoch.
pub const INCARNATIONS: &str = "db_event_writer_incarnations";

/// Deletes ledger entries older than `keep`, in slices so no statement holds locks for long.
/// Returns how many were removed.
pub async fn prune(pool: &Pool, schema: &str, keep: Duration) -> Result<u64, WriteError> {
    let ledger = qualified(schema, LEDGER);
    let client = pool.get().await?;
    let sql = format!(
        "DELETE FROM {ledger} WHERE ctid IN \
         (SELECT ctid FROM {ledger} WHERE committed_at < now() - make_interval(secs => $1) LIMIT 10000)"
    );
    let mut removed = 0;
    loop {
        let n = client.execute(&sql, &[&keep.as_secs_f64()]).await?;
        removed += n;
        if n < 10_000 {
            return Ok(removed);
        }
    }
}

/// The identity of messages of JetStream stream `jetstream` in its incarnation `epoch`: what log ids and the
/// ledger are keyed by, with the sequence. The first incarnation keeps the bare name (as before incarnations
/// were tracked, so rows written then still match their redeliveries); later ones are `<name>.<epoch>`, which
/// no stream name can be.
pub fn identity(jetstream: &str, epoch: i32) -> String {
    if epoch == 0 { jetstream.to_owned() } else { format!("{jetstream}.{epoch}") }
}

/// The epoch of the incarnation of `jetstream` created at `created_ns` (nanoseconds since the epoch, as
/// JetStream reports it), registering it when it is new. The first incarnation registered is epoch 0, unless the
/// ledger already holds messages of that stream committed before it was created: then those came from an
/// earlier incarnation, and this one is epoch 1.
pub async fn incarnation(pool: &Pool, schema: &str, jetstream: &str, created_ns: i64) -> Result<i32, WriteError> {
    let table = qualified(schema, INCARNATIONS);
    let ledger = qualified(schema, LEDGER);
    let mut client = pool.get().await?;
    if let Some(row) = client
        .query_opt(
            &format!("SELECT epoch FROM {table} WHERE jetstream = $1 AND created_ns = $2"),
            &[&jetstream, &created_ns],
        )
        .await?
    {
        return Ok(row.get(0));
    }
    let tx = client.transaction().await?;
    // Two instances meeting a new incarnation at once must agree on its number.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('db-event-writer incarnations'), hashtext($1))", &[&jetstream])
        .await?;
    let epoch: i32 = match tx
        .query_opt(
            &format!("SELECT epoch FROM {table} WHERE jetstream = $1 AND created_ns = $2"),
            &[&jetstream, &created_ns],
        )
        .await?
    {
        Some(row) => row.get(0),
        None => {
            let latest: Option<i32> = tx
                .query_one(&format!("SELECT max(epoch) FROM {table} WHERE jetstream = $1"), &[&jetstream])
                .await?
                .get(0);
            let epoch = match latest {
                Some(e) => e + 1,
                None => {
                    let older: bool = tx
                        .query_one(
                            &format!(
                                "SELECT EXISTS (SELECT 1 FROM {ledger} WHERE jetstream = $1 \
                                 AND committed_at < to_timestamp($2::float8 / 1e9))"
                            ),
                            &[&jetstream, &(created_ns as f64)],
                        )
                        .await?
                        .get(0);
                    i32::from(older)
                }
            };
            tx.execute(
                &format!("INSERT INTO {table} (jetstream, created_ns, epoch) VALUES ($1, $2, $3)"),
                &[&jetstream, &created_ns, &epoch],
            )
            .await?;
            if epoch > 0 {
                tracing::warn!(
                    jetstream,
                    epoch,
                    "this JetStream stream was created again since its messages were last read: its sequences start \
                     over, so its messages get new identities (nothing of the old incarnation is skipped or doubled)"
                );
            }
            epoch
        }
    };
    tx.commit().await?;
    Ok(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_incarnation_keeps_the_bare_name_and_later_ones_cannot_collide_with_a_name() {
        assert_eq!(identity("events", 0), "events");
        assert_eq!(identity("events", 2), "events.2");
        // Stream names cannot contain '.', so no stream's first incarnation looks like another's later one.
        assert!(crate::config::check_name("events.2").is_err());
    }
}

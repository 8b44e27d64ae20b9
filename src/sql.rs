//! SQL helpers every writer shares: identifier quoting, the column types sent by binary COPY (`jsonb` and
//! `uuid` from text), and the COPY-then-INSERT write path. Uses nothing of the project.

use tokio_postgres::error::SqlState;

/// `"schema"."table"`, quoted for SQL.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// JSON text sent as binary `jsonb` (format version 1, then the text), for binary COPY.
#[derive(Debug, Clone, Copy)]
pub struct JsonbText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A UUID in its text form, sent as binary `uuid` (16 bytes), for binary COPY. Non-hex text is an encode error.
#[derive(Debug, Clone, Copy)]
pub struct UuidText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for UuidText<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Decoded in place (no allocation): this runs once per row of the tables keyed by UUID.
        let not_uuid = || format!("{:?} is not a UUID", self.0);
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 16];
        let mut n = 0usize;
        for c in self.0.bytes().filter(|b| *b != b'-') {
            let v = nibble(c).ok_or_else(not_uuid)?;
            let slot = bytes.get_mut(n / 2).ok_or_else(not_uuid)?;
            *slot = (*slot << 4) | v;
            n += 1;
        }
        if n != 32 {
            return Err(not_uuid().into());
        }
        out.extend_from_slice(&bytes);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::UUID
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Writes a batch by binary COPY, PostgreSQL's fastest path; if any row already exists (a redelivery: the COPY
/// fails whole with 23505) the savepoint undoes it and `insert` (an `ON CONFLICT DO NOTHING` statement) writes
/// the batch instead. A concurrent instance writing the same rows blocks on the key, then falls back the same way.
pub async fn copy_or_insert<C, CF, I, IF>(
    tx: &tokio_postgres::Transaction<'_>,
    copy: C,
    insert: I,
) -> Result<u64, tokio_postgres::Error>
where
    C: FnOnce() -> CF,
    CF: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
    I: FnOnce() -> IF,
    IF: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
{
    tx.batch_execute("SAVEPOINT dbew_copy").await?;
    match copy().await {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT dbew_copy").await?;
            insert().await
        }
        other => other,
    }
}

/// One column of a batch for an `unnest` INSERT: `f` of every row, in order.
pub fn column<'a, R: 'a, T>(rows: impl IntoIterator<Item = &'a R>, f: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.into_iter().map(f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_encode_to_sixteen_bytes() {
        use tokio_postgres::types::{ToSql, Type};
        let mut out = bytes::BytesMut::new();
        UuidText("c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2").to_sql(&Type::UUID, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0xc0, 0xb2, 0xf5, 0xaf, 0x7d, 0x5d, 0x4c, 0x1a, 0x8c, 0x5b, 0x7c, 0x6a, 0x9f, 0x4c, 0x94, 0xb2]
        );
        let mut upper = bytes::BytesMut::new();
        UuidText("C0B2F5AF7D5D4C1A8C5B7C6A9F4C94B2").to_sql(&Type::UUID, &mut upper).unwrap();
        assert_eq!(upper, out);
        for bad in [
            "nope",
            "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b",
            "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2a",
            "g0b2f5af7d5d4c1a8c5b7c6a9f4c94b2",
        ] {
            assert!(UuidText(bad).to_sql(&Type::UUID, &mut bytes::BytesMut::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(qualified("platform", "logs"), "\"platform\".\"logs\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}

//! One text per query for both stores. Queries shared by the SQLite and PostgreSQL stores
//! are written once, in PostgreSQL's dialect, and [`sqlite`] adapts them:
//! - `$1` placeholders become `?1` (SQLite numbers them the same way);
//! - `paved_now_ms()` (a function the PostgreSQL migrations define, so every replica reads
//!   the database's clock) becomes SQLite's own clock in milliseconds;
//! - row locks (` FOR SHARE`, ` FOR UPDATE`) are dropped: SQLite has one writer, so a
//!   statement already sees no concurrent change;
//! - ` COLLATE "C"` is dropped: SQLite already orders text by bytes;
//! - `strpos(` becomes `instr(` (the same arguments, in the same order).
//!
//! The shared implementations (`impl_*!` macros in `runs.rs`, `inventory.rs`,
//! `operations.rs`, `locks.rs`, `merges.rs`) take the dialect as a function, so one body
//! binds the same arguments for both.

use std::borrow::Cow;

/// The SQL for PostgreSQL: as written.
pub(super) fn postgres(sql: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(sql)
}

/// The SQL for SQLite (see the module documentation).
pub(super) fn sqlite(sql: &'static str) -> Cow<'static, str> {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        out.push(if digits > 0 { '?' } else { '$' });
        rest = after;
    }
    out.push_str(rest);
    let out = out
        .replace(
            "paved_now_ms()",
            "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        )
        .replace(" FOR SHARE", "")
        .replace(" FOR UPDATE", "")
        .replace(" COLLATE \"C\"", "")
        .replace("strpos(", "instr(");
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    #[test]
    fn placeholders_clock_and_locks_are_adapted() {
        assert_eq!(
            sqlite("SELECT x FROM t WHERE a = $1 AND b = $12 AND c > paved_now_ms() FOR SHARE"),
            "SELECT x FROM t WHERE a = ?1 AND b = ?12 AND c > CAST(unixepoch('subsec') * 1000 AS INTEGER)"
        );
        assert_eq!(sqlite("SELECT '$' || $1"), "SELECT '$' || ?1");
        assert_eq!(
            sqlite("SELECT n FROM t ORDER BY n COLLATE \"C\""),
            "SELECT n FROM t ORDER BY n"
        );
        assert_eq!(
            sqlite("SELECT strpos($1, ',' || team || ',') > 0"),
            "SELECT instr(?1, ',' || team || ',') > 0"
        );
        assert_eq!(postgres("SELECT $1"), "SELECT $1");
    }

    /// SQLite's clock expression works (the bundled SQLite has `unixepoch('subsec')`) and
    /// reads the same clock as the process, to the millisecond.
    #[tokio::test]
    async fn sqlite_reads_the_clock_in_milliseconds() {
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("memory");
        let before = crate::clock::wall().timestamp_millis();
        let now: i64 = sqlx::query_scalar(&sqlite("SELECT paved_now_ms()"))
            .fetch_one(&mut conn)
            .await
            .expect("clock");
        let after = crate::clock::wall().timestamp_millis();
        assert!(
            before - 1 <= now && now <= after + 1,
            "{before} <= {now} <= {after}"
        );
    }
}

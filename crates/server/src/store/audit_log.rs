//! The audit log's table: entries appended to the hash chain, inside the write
//! transaction of the change they record (so the two succeed or fail together) or on
//! their own, and read back.

use super::backend::Backend;
use super::errors::{audit_write_error, is_unique_violation, OrDatabase};
use super::sql::{commit, execute_in, SqlStore, Transaction};
use crate::audit::{AuditRecord, AuditRow};
use crate::domain::Result;
use crate::store::AuditQuery;

/// Audit rows one INSERT carries at most (11 parameters each).
const AUDIT_ROWS_PER_STATEMENT: usize = 128;

/// An `audit_log` row as read.
#[derive(sqlx::FromRow)]
struct AuditEntryRecord {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    workspace: Option<String>,
    workspace_id: Option<String>,
    target: Option<String>,
    outcome: String,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl From<AuditEntryRecord> for AuditRow {
    fn from(record: AuditEntryRecord) -> Self {
        AuditRow {
            seq: record.seq,
            at: record.at,
            actor: record.actor,
            action: record.action,
            workspace: record.workspace,
            workspace_id: record.workspace_id,
            target: record.target,
            outcome: record.outcome,
            detail: record.detail,
            prev_hash: record.prev_hash,
            hash: record.hash,
        }
    }
}

/// Appends `record` to the chain inside `transaction`, which the backend has already
/// serialised against other writers.
pub(super) async fn append_in<DB: Backend>(
    transaction: &mut Transaction<DB>,
    record: AuditRecord,
) -> Result<()> {
    let previous = last_audit(transaction).await?;
    insert_audit_rows(transaction, &[AuditRow::chained(record, previous)]).await
}

/// Commits a change that may have matched nothing: with its audit entry when it changed
/// something, so a no-op leaves no entry. Returns whether it changed.
pub(super) async fn commit_audited_if<DB: Backend>(
    mut transaction: Transaction<DB>,
    changed: bool,
    audit: AuditRecord,
) -> Result<bool> {
    if changed {
        append_in(&mut transaction, audit).await?;
    }
    commit(transaction).await?;
    Ok(changed)
}

/// Runs `statement` (with `keys` bound in order) in a write transaction: a change of
/// at most one row, committed with `audit` if it made one (see [`commit_audited_if`]).
pub(super) async fn change_one_audited<DB: Backend>(
    store: &SqlStore<DB>,
    statement: &str,
    keys: &[&str],
    audit: AuditRecord,
) -> Result<bool> {
    let mut transaction = store.begin_write().await?;
    let changed = execute_in(&mut transaction, statement, keys).await? == 1;
    commit_audited_if(transaction, changed, audit).await
}

/// Commits `transaction` with `audit` appended: a change and its entry, together.
pub(super) async fn commit_audited<DB: Backend>(
    mut transaction: Transaction<DB>,
    audit: AuditRecord,
) -> Result<()> {
    append_in(&mut transaction, audit).await?;
    commit(transaction).await
}

/// The newest entry's sequence number and hash, which the next one chains to.
async fn last_audit<DB: Backend>(
    transaction: &mut Transaction<DB>,
) -> Result<Option<(i64, String)>> {
    sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **transaction)
        .await
        .or_db()
}

/// The INSERT for `count` audit rows, built into one string: it is built for every
/// batch the audit writer commits. Its parameters are numbered where the backend needs
/// that, else positional (see [`Backend::NUMBERED_PARAMETERS`]).
fn audit_insert_statement<DB: Backend>(count: usize) -> String {
    use std::fmt::Write as _;
    const HEAD: &str = "INSERT INTO audit_log (seq, at, actor, action, workspace, workspace_id, \
                        target, outcome, detail, prev_hash, hash) VALUES ";
    let mut statement = String::with_capacity(HEAD.len() + count * 11 * 7);
    statement.push_str(HEAD);
    for index in 0..count {
        statement.push_str(if index == 0 { "(" } else { ", (" });
        for column in 1..=11 {
            let separator = if column == 1 { "" } else { ", " };
            if DB::NUMBERED_PARAMETERS {
                let _ = write!(statement, "{separator}${}", index * 11 + column);
            } else {
                let _ = write!(statement, "{separator}?");
            }
        }
        statement.push(')');
    }
    statement
}

/// That INSERT with the rows bound.
fn audit_insert<'q, DB: Backend>(
    statement: &'q str,
    rows: &'q [AuditRow],
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>> {
    let mut query = sqlx::query(statement);
    for row in rows {
        query = query
            .bind(row.seq)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.action)
            .bind(&row.workspace)
            .bind(&row.workspace_id)
            .bind(&row.target)
            .bind(&row.outcome)
            .bind(&row.detail)
            .bind(&row.prev_hash)
            .bind(&row.hash);
    }
    query
}

/// Inserts audit rows, already chained, in one statement.
async fn insert_audit_rows<DB: Backend>(
    transaction: &mut Transaction<DB>,
    rows: &[AuditRow],
) -> Result<()> {
    let statement = audit_insert_statement::<DB>(rows.len());
    audit_insert(&statement, rows)
        .execute(&mut **transaction)
        .await
        .map_err(audit_write_error)?;
    Ok(())
}

/// Chains records after `previous`: the rows, and what the next entry chains to.
fn chain_after(
    records: Vec<AuditRecord>,
    mut previous: Option<(i64, String)>,
) -> (Vec<AuditRow>, Option<(i64, String)>) {
    let rows: Vec<AuditRow> = records
        .into_iter()
        .map(|record| {
            let row = AuditRow::chained(record, previous.take());
            previous = Some((row.seq, row.hash.clone()));
            row
        })
        .collect();
    (rows, previous)
}

pub(super) async fn append_audit<DB: Backend>(
    store: &SqlStore<DB>,
    audit: AuditRecord,
) -> Result<()> {
    let transaction = store.begin_write().await?;
    commit_audited(transaction, audit).await
}

pub(super) async fn append_audits<DB: Backend>(
    store: &SqlStore<DB>,
    audits: Vec<AuditRecord>,
) -> Result<Option<(i64, String)>> {
    // One multi-row INSERT per chunk: each statement is a round trip to the database
    // (for SQLite, a hand-off to its worker thread), and this runs once for every
    // resolve waiting to be audited.
    let mut transaction = store.begin_write().await?;
    let mut previous = last_audit(&mut transaction).await?;
    let mut audits = audits.into_iter().peekable();
    while audits.peek().is_some() {
        let chunk: Vec<AuditRecord> = audits.by_ref().take(AUDIT_ROWS_PER_STATEMENT).collect();
        let (rows, newest) = chain_after(chunk, previous);
        previous = newest;
        insert_audit_rows(&mut transaction, &rows).await?;
    }
    commit(transaction).await?;
    Ok(previous)
}

pub(super) async fn append_audits_after<DB: Backend>(
    store: &SqlStore<DB>,
    audits: &[AuditRecord],
    previous: (i64, String),
) -> Result<Option<(i64, String)>> {
    // Only where this process's writers take turns on one connection (SQLite): a
    // transactional writer elsewhere would otherwise lose its sequence number to this
    // statement between its read and its insert.
    if !DB::ONE_WRITER_CONNECTION || audits.len() > AUDIT_ROWS_PER_STATEMENT {
        return Ok(None);
    }
    let (rows, newest) = chain_after(audits.to_vec(), Some(previous));
    let statement = audit_insert_statement::<DB>(rows.len());
    match audit_insert(&statement, &rows).execute(&store.writer).await {
        Ok(_) => Ok(newest),
        // Another entry took the next sequence number first: nothing was written, and
        // the caller appends through the transactional path.
        Err(error) if is_unique_violation(&error) => Ok(None),
        Err(error) => Err(audit_write_error(error)),
    }
}

pub(super) async fn audit_entries<DB: Backend>(
    store: &SqlStore<DB>,
    query: &AuditQuery,
) -> Result<Vec<AuditRow>> {
    let order = if query.newest_first { "DESC" } else { "ASC" };
    let statement = format!(
        "SELECT seq, at, actor, action, workspace, workspace_id, target, outcome, detail, \
         prev_hash, hash FROM audit_log WHERE seq > $1 AND ($2 IS NULL OR workspace_id = $2) \
         ORDER BY seq {order} LIMIT $3"
    );
    let entries: Vec<AuditEntryRecord> = sqlx::query_as(&statement)
        .bind(query.after_seq)
        .bind(&query.workspace_id)
        .bind(query.limit)
        .fetch_all(&store.pool)
        .await
        .or_db()?;
    Ok(entries.into_iter().map(AuditRow::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_binds_eleven_parameters_a_row_in_order() {
        assert_eq!(
            audit_insert_statement::<sqlx::Postgres>(2),
            "INSERT INTO audit_log (seq, at, actor, action, workspace, workspace_id, target, \
             outcome, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11), ($12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
        );
        let largest = audit_insert_statement::<sqlx::Postgres>(AUDIT_ROWS_PER_STATEMENT);
        assert_eq!(largest.matches('$').count(), AUDIT_ROWS_PER_STATEMENT * 11);
        assert!(largest.ends_with(&format!("${})", AUDIT_ROWS_PER_STATEMENT * 11)));
        let positional = audit_insert_statement::<sqlx::Sqlite>(AUDIT_ROWS_PER_STATEMENT);
        assert_eq!(
            positional.matches('?').count(),
            AUDIT_ROWS_PER_STATEMENT * 11
        );
        assert!(!positional.contains('$'));
        assert!(positional.ends_with(", ?)"));
    }
}

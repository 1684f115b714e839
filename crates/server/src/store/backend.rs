//! What the shared SQL needs of a database, in one trait: [`Backend`], implemented by
//! SQLite and PostgreSQL (in `sqlite.rs` and `postgres.rs`), so every statement is
//! written once, in a function generic over `DB: Backend`, and checked by the compiler
//! against both drivers. sqlx's `Any` driver was the alternative; it loses type
//! information (bools, blobs) that both drivers keep.

use std::future::Future;
use std::path::Path;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Type};

use crate::domain::Result;

/// A database the store runs on, with everything its statements do with it.
///
/// Rust passes a trait's bounds on *other* types (`String: Encode<DB>`, `&mut
/// DB::Connection: Executor`) on to code that names the trait only when they are bounds
/// on associated types of its supertraits; as plain `where` clauses they would have to
/// be repeated on every generic function. So [`SqlTypes`] has an associated type for
/// each Rust type the statements bind or read: the first `SqlTypes` bound below fixes
/// each to that very type, and the second says what the database does with it, which
/// the compiler then knows of `String`, `i64`, … themselves. A statement that binds or
/// reads a type not listed here fails to compile until it is added to both.
pub trait Backend:
    Database<QueryResult: RowsAffected>
    + for<'q> Database<Arguments<'q>: IntoArguments<'q, Self>>
    + for<'a> SqlTypes<
        'a,
        Text = String,
        Integer = i64,
        Boolean = bool,
        Bytes = Vec<u8>,
        Str = &'a str,
        MaybeText = Option<String>,
        MaybeStr = Option<&'a str>,
        MaybeInteger = Option<i64>,
        MaybeBytes = Option<Vec<u8>>,
        Position = usize,
        OnConnection = &'a mut <Self as Database>::Connection,
    > + for<'a> SqlTypes<
        'a,
        Text: Column<'a, Self>,
        Integer: Column<'a, Self>,
        Boolean: Column<'a, Self>,
        Bytes: Column<'a, Self>,
        Str: Encode<'a, Self> + Type<Self> + ColumnIndex<Self::Row>,
        MaybeText: Encode<'a, Self>,
        MaybeStr: Encode<'a, Self>,
        MaybeInteger: Encode<'a, Self>,
        MaybeBytes: Encode<'a, Self>,
        Position: ColumnIndex<Self::Row>,
        OnConnection: Executor<'a, Database = Self>,
    >
{
    /// What [`crate::store::Store::backend`] answers: `sqlite` or `postgres`.
    const LABEL: &'static str;

    /// Whether this process's writers take turns on one connection, so a statement
    /// written outside a transaction cannot land between another writer's read and
    /// write (SQLite's single writer connection; not PostgreSQL's pool).
    const ONE_WRITER_CONNECTION: bool;

    /// Whether statements name their parameters by number (`$1`, PostgreSQL's only
    /// form) rather than by position (`?`). SQLite takes both, but sqlx looks every
    /// numbered parameter's name up in SQLite's list of names, one scan per parameter:
    /// quadratic in a many-row INSERT such as an audit batch's 1,408 parameters.
    const NUMBERED_PARAMETERS: bool;

    /// Starts a write transaction on `writes` that no other writer of the database can
    /// interleave with: every audited write reads the audit chain's head and appends
    /// after it, and every lease is a select-then-update.
    fn begin_write(
        writes: &Pool<Self>,
    ) -> impl Future<Output = Result<sqlx::Transaction<'static, Self>>> + Send;

    /// Writes a consistent snapshot of the whole database to `path` (a new or empty
    /// file) while it serves; see [`crate::store::Store::snapshot_into`].
    fn snapshot_into(pool: &Pool<Self>, path: &Path) -> impl Future<Output = Result<()>> + Send;
}

/// The Rust types the statements bind and read; see [`Backend`] for why they are named.
pub trait SqlTypes<'a> {
    type Text;
    type Integer;
    type Boolean;
    type Bytes;
    type Str;
    type MaybeText;
    type MaybeStr;
    type MaybeInteger;
    type MaybeBytes;
    /// A column's position, as tuples of columns are read.
    type Position;
    /// A connection to run a statement on (inside a transaction or on its own).
    type OnConnection;
}

impl<'a, DB: Database> SqlTypes<'a> for DB {
    type Text = String;
    type Integer = i64;
    type Boolean = bool;
    type Bytes = Vec<u8>;
    type Str = &'a str;
    type MaybeText = Option<String>;
    type MaybeStr = Option<&'a str>;
    type MaybeInteger = Option<i64>;
    type MaybeBytes = Option<Vec<u8>>;
    type Position = usize;
    type OnConnection = &'a mut DB::Connection;
}

/// A type a column is written from and read into.
pub trait Column<'a, DB: Database>: Encode<'a, DB> + Decode<'a, DB> + Type<DB> {}

impl<'a, DB: Database, T: Encode<'a, DB> + Decode<'a, DB> + Type<DB>> Column<'a, DB> for T {}

/// How many rows a statement changed: each driver says so in its own result type.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

//! `regkeeper backup FILE` and `regkeeper restore FILE`.
//!
//! `backup` is a REST client like the other commands: `POST /api/v1/admin/backup` makes
//! the running server take a consistent snapshot of its SQLite database (`VACUUM INTO`,
//! while it serves), streamed into `FILE.partial-PID` (0600), checked (length, SQLite
//! header) and renamed to `FILE`. On PostgreSQL it prints the `pg_dump` recipe instead.
//!
//! `restore` is the one command besides `serve` that works on server state, because the
//! server it restores is stopped: it reads the server's settings (`--config`,
//! `REGKEEPER_*`) to find the database, copies the backup beside it, checks the copy
//! (integrity, a regkeeper database, no migration this release does not know), and
//! swaps it in. An existing database is replaced only with `--force`, and kept as
//! `DB.before-restore-TIME`; one that another process has open (a running server) is
//! refused. Neither command ever touches the master key: a backup holds sealed secrets,
//! and the key file (or KMS key) that opens them is kept apart from it.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use regkeeper_client::{Client, ClientError};

use crate::clock::{format_timestamp, Clock, SystemClock};
use crate::config::{Config, Database, Overrides};
use crate::store::sqlite;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

#[derive(Args)]
pub(super) struct BackupArgs {
    /// Where to write the backup (an SQLite database file).
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub(super) struct RestoreArgs {
    /// A backup made by `regkeeper backup`.
    file: PathBuf,
    /// The server's settings file, as given to `regkeeper serve --config`; the
    /// REGKEEPER_* variables apply as for serve.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's data directory (instead of REGKEEPER_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Replace an existing database; it is kept beside as DB.before-restore-TIME.
    #[arg(long)]
    force: bool,
}

pub(super) fn backup(client: &Client, args: BackupArgs) -> anyhow::Result<()> {
    if args.file.exists() && !args.force {
        anyhow::bail!(
            "{} exists; choose another file name, or add --force to replace it",
            args.file.display()
        );
    }
    let partial = sibling(&args.file, &format!("partial-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let written = client
        .download("/api/v1/admin/backup", &mut file)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| {
            file.sync_all()?;
            check_header(&partial)?;
            Ok(bytes)
        });
    let bytes = match written {
        Ok(bytes) => bytes,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            if error
                .downcast_ref::<ClientError>()
                .and_then(ClientError::code)
                == Some("backup_needs_pg_dump")
            {
                eprintln!(
                    "The server runs on PostgreSQL. Back it up with PostgreSQL's own tools:\n\n{}\n",
                    crate::store::PG_DUMP_RECIPE
                );
            }
            return Err(error);
        }
    };
    std::fs::rename(&partial, &args.file)
        .with_context(|| format!("renaming {} to {}", partial.display(), args.file.display()))?;
    sync_directory(&args.file);
    println!(
        "Backed up the server's database to {} ({bytes} bytes).",
        args.file.display()
    );
    println!(
        "It holds sealed secrets, not the master key: keep the server's key file (REGKEEPER_MASTER_KEY_FILE, by default master.key in its data directory) safe and apart from it; a restore needs both."
    );
    Ok(())
}

pub(super) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .as_ref()
        .map(|path| path.to_string_lossy().into_owned());
    let environment = |name: &str| match (name, &data_dir) {
        ("REGKEEPER_DATA_DIR", Some(directory)) => Some(directory.clone()),
        _ => std::env::var(name).ok(),
    };
    let config = Config::load(args.config.as_deref(), &environment, &Overrides::default())?;
    let database = match &config.database {
        Database::Sqlite(path) => path.clone(),
        Database::Url(_) => anyhow::bail!(
            "the server's database is PostgreSQL (REGKEEPER_DATABASE_URL): restore it with pg_restore:\n{}",
            crate::store::PG_DUMP_RECIPE
        ),
    };
    check_header(&args.file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(parent) = database
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        create_private_directory(parent)?;
    }
    let exists = database.exists();
    if exists && !args.force {
        anyhow::bail!(
            "{} exists; stop the server, then add --force to restore over it (the current database is kept as {}.before-restore-TIME)",
            database.display(),
            database.display()
        );
    }
    // The copy is checked where it will be used, so what was checked is what is used.
    let staged = sibling(&database, "restoring");
    let _ = std::fs::remove_file(&staged);
    copy_private(&args.file, &staged)?;
    let facts = match runtime.block_on(sqlite::inspect_backup(&staged)) {
        Ok(facts) => facts,
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            return Err(error.context(format!("{} is not a usable backup", args.file.display())));
        }
    };
    let known = sqlite::known_migrations();
    if let Some(unknown) = facts
        .migrations
        .iter()
        .find(|version| !known.contains(version))
    {
        let _ = std::fs::remove_file(&staged);
        anyhow::bail!(
            "{} was made by a newer regkeeper (it has migration {unknown}, which this release, {}, does not know): restore it with that release",
            args.file.display(),
            regkeeper_client::VERSION
        );
    }
    let kept = if exists {
        if let Err(error) = runtime.block_on(sqlite::release_for_replacement(&database)) {
            let _ = std::fs::remove_file(&staged);
            return Err(error.context(format!(
                "{} is in use: stop the server first",
                database.display()
            )));
        }
        let stamp = format_timestamp(SystemClock.now()).replace(':', "");
        let kept = sibling(&database, &format!("before-restore-{stamp}"));
        std::fs::rename(&database, &kept)
            .with_context(|| format!("moving {} aside", database.display()))?;
        Some(kept)
    } else {
        None
    };
    std::fs::rename(&staged, &database)
        .with_context(|| format!("moving the restored database to {}", database.display()))?;
    sync_directory(&database);
    println!(
        "Restored {} to {}: {} users, {} credentials, migrations up to {}.",
        args.file.display(),
        database.display(),
        facts.users,
        facts.credentials,
        facts.migrations.last().copied().unwrap_or_default()
    );
    if let Some(kept) = kept {
        println!("The previous database is kept as {}.", kept.display());
    }
    if facts.migrations.last() < known.last() {
        println!("The server applies this release's newer migrations when it starts.");
    }
    if !facts.key_versions.is_empty() {
        let kms = std::env::var("REGKEEPER_MASTER_KEY_KMS_KEY_ID").is_ok_and(|id| !id.is_empty());
        if kms {
            println!("Its secrets are sealed under the master key; the server reads it from KMS (REGKEEPER_MASTER_KEY_KMS_KEY_ID).");
        } else if config.master_key_file.exists() {
            println!(
                "Its secrets open only with the master key it was sealed with: {} must be that key file (the server refuses secrets, 503, with any other).",
                config.master_key_file.display()
            );
        } else {
            eprintln!(
                "warning: its secrets are sealed with a master key, and there is no key file at {}: put the key file kept with the backup there (or set REGKEEPER_MASTER_KEY_FILE) before starting the server, which otherwise refuses every secret (503).",
                config.master_key_file.display()
            );
        }
    }
    Ok(())
}

/// `PATH.SUFFIX`, in the same directory, so a rename onto `PATH` is atomic.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

fn check_header(path: &Path) -> anyhow::Result<()> {
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut header))
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        &header == SQLITE_HEADER,
        "{} is not an SQLite database (a PostgreSQL dump is restored with pg_restore)",
        path.display()
    );
    Ok(())
}

fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut source =
        std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("creating {}", to.display()))?;
    std::io::copy(&mut source, &mut target)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    target.flush()?;
    target.sync_all()?;
    Ok(())
}

/// As `serve` makes it: only its owner may enter.
fn create_private_directory(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(())
}

/// Makes a rename in the file's directory durable; best effort.
fn sync_directory(path: &Path) {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        if let Ok(directory) = std::fs::File::open(parent) {
            let _ = directory.sync_all();
        }
    }
}

//! The audit part of the store contract: entries are read after a sequence number, by
//! workspace, in either order; the hash chain stays linear under concurrent writers, the
//! database refuses to change or remove entries, an action whose entry cannot be
//! written does not happen, the writer's fast path chains to the entry it wrote last,
//! and a cancelled write never wedges the store.

use std::sync::Arc;

use regkeeper::audit::{verify_chain, AuditRecord, AuditRow};
use regkeeper::store::AuditQuery;

use super::{audit_count, credential, new_user, record, Subject};

pub(super) async fn audit_chain_under_concurrency(subject: Subject) {
    let store = subject.store.clone();
    let tasks: Vec<_> = (0..24)
        .map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let record =
                    AuditRecord::new(index, None, "test.concurrent").target(format!("t{index}"));
                store.append_audit(record).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 1_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 24);
    assert_eq!(verify_chain(&rows, None).unwrap().0, 24);
    let newest = store
        .audit_entries(&AuditQuery {
            limit: 2,
            newest_first: true,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        newest.iter().map(|row| row.seq).collect::<Vec<_>>(),
        vec![24, 23]
    );
}

/// The database itself refuses to change or remove audit entries.
pub(super) async fn audit_log_is_append_only(subject: Subject) {
    subject
        .store
        .append_audit(record("test.append"))
        .await
        .unwrap();
    let attempts = [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
    ];
    if subject.raw_url.starts_with("sqlite://") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&subject.raw_url)
            .await
            .unwrap();
        for statement in attempts {
            let error = sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap_err();
            assert!(error.to_string().contains("append-only"), "{error}");
        }
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&subject.raw_url).await.unwrap();
        for statement in attempts.into_iter().chain(["TRUNCATE audit_log"]) {
            let error = sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap_err();
            assert!(error.to_string().contains("append-only"), "{error}");
        }
    }
    assert_eq!(audit_count(&subject.store).await, 1);
}

/// If the audit entry cannot be written, the action it records does not happen.
pub(super) async fn no_audit_no_action(subject: Subject) {
    let alice = new_user("alice");
    subject
        .store
        .create_user(&alice, record("user.create"))
        .await
        .unwrap();
    if subject.raw_url.starts_with("sqlite://") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&subject.raw_url)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END",
        )
        .execute(&mut connection)
        .await
        .unwrap();
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&subject.raw_url).await.unwrap();
        sqlx::raw_sql(
            "CREATE FUNCTION audit_log_broken() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'audit storage unavailable'; END; $$; \
             CREATE TRIGGER audit_log_broken BEFORE INSERT ON audit_log \
             FOR EACH ROW EXECUTE FUNCTION audit_log_broken();",
        )
        .execute(&mut connection)
        .await
        .unwrap();
    }
    let store = &subject.store;
    let first = credential(&alice.workspace, "prod");
    let error = store
        .insert_credential(&first, record("credential.create"))
        .await
        .unwrap_err();
    // What failed is internal detail, for the log (`Error::detail`), not the message.
    let detail = format!("{:?}", error.detail());
    assert!(detail.contains("audit log write failed"), "{detail}");
    assert!(store
        .credential(&alice.workspace.id, "prod")
        .await
        .unwrap()
        .is_none());
    let bob = new_user("bob");
    assert!(store
        .create_user(&bob, record("user.create"))
        .await
        .is_err());
    assert!(store.user_by_name("bob").await.unwrap().is_none());
    assert!(store.workspace_by_name("~bob").await.unwrap().is_none());
}

/// The audit writer's fast path: a batch chained to the entry it wrote last, in one
/// statement, refused (nothing written) once another entry came first.
pub(super) async fn audit_appends_chained_to_the_last_known_entry(subject: Subject) {
    let store = &subject.store;
    let first = store
        .append_audits(vec![record("one"), record("two")])
        .await
        .unwrap()
        .expect("the newest entry");
    assert_eq!(first.0, 2);
    let fast = store
        .append_audits_after(&[record("three"), record("four")], first.clone())
        .await
        .unwrap();
    let count = audit_count(store).await;
    match store.backend() {
        "sqlite" => {
            let newest = fast.expect("SQLite appends in one statement");
            assert_eq!(newest.0, 4);
            assert_eq!(count, 4);
            // Another writer comes first: the stale link is refused, nothing written.
            store.append_audit(record("other")).await.unwrap();
            assert!(store
                .append_audits_after(&[record("stale")], newest)
                .await
                .unwrap()
                .is_none());
            assert_eq!(audit_count(store).await, 5);
        }
        _ => {
            assert!(fast.is_none(), "other backends use the transactional path");
            assert_eq!(count, 2);
        }
    }
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(rows.iter().all(|row| row.action != "stale"));
    assert_eq!(verify_chain(&rows, None).unwrap().0, rows.len() as i64);
}

/// A request cancelled in the middle of a write (its client hung up) must not leave a
/// pooled connection inside a transaction: that held SQLite's write lock, so every
/// later write waited or failed until the server restarted.
pub(super) async fn abandoned_writes_do_not_wedge_the_store(subject: Subject) {
    let store = &subject.store;
    for attempt in 0..400u64 {
        // Cancelled at many different points of a write's life, several at once.
        let mut cancelled = tokio::task::JoinSet::new();
        for offset in 0..4 {
            let store = Arc::clone(store);
            let limit = std::time::Duration::from_micros((attempt * 13 + offset * 101) % 900);
            cancelled.spawn(async move {
                tokio::time::timeout(limit, store.append_audit(record("cancelled.write"))).await
            });
        }
        while let Some(result) = cancelled.join_next().await {
            if let Ok(written) = result.unwrap() {
                written.unwrap();
            }
        }
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.append_audit(record("after.cancelled")),
    )
    .await
    .expect("a write after cancelled ones is not blocked")
    .expect("and succeeds");
    let rows = store
        .audit_entries(&AuditQuery {
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.last().unwrap().action, "after.cancelled");
    assert_eq!(verify_chain(&rows, None).unwrap().0, rows.len() as i64);
}

/// The audit log's reads: entries after a sequence number, of one workspace or all,
/// oldest or newest first, at most `limit`; written as recorded, and the batch append
/// answers its newest entry (none for an empty batch, which writes nothing).
pub(super) async fn audit_entries_are_read_by_workspace_and_sequence(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.append_audits(Vec::new()).await.unwrap(), None);
    assert_eq!(audit_count(store).await, 0);
    let of = |workspace: &str, action: &'static str| {
        AuditRecord::new(2_000, None, action)
            .workspace(Some(workspace), &format!("~{workspace}"))
            .target(format!("{action} target"))
    };
    store.append_audit(of("one", "first")).await.unwrap();
    let newest = store
        .append_audits(vec![
            of("two", "second"),
            record("third"),
            of("one", "fourth"),
            of("two", "fifth"),
        ])
        .await
        .unwrap()
        .expect("the newest entry");
    let read = |workspace_id: Option<&str>, after_seq, limit, newest_first| {
        let query = AuditQuery {
            workspace_id: workspace_id.map(str::to_owned),
            after_seq,
            limit,
            newest_first,
        };
        async move { store.audit_entries(&query).await.unwrap() }
    };
    let all = read(None, 0, 100, false).await;
    assert_eq!(
        all.iter()
            .map(|row| (row.seq, row.action.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (1, "first"),
            (2, "second"),
            (3, "third"),
            (4, "fourth"),
            (5, "fifth")
        ]
    );
    assert_eq!(newest, (5, all[4].hash.clone()));
    assert_eq!(
        (
            all[0].workspace_id.as_deref(),
            all[0].workspace.as_deref(),
            all[0].target.as_deref(),
            all[0].actor.as_str(),
            all[0].at
        ),
        (
            Some("one"),
            Some("~one"),
            Some("first target"),
            "system",
            2_000
        )
    );
    assert_eq!(all[2].workspace_id, None);
    let seqs = |rows: Vec<AuditRow>| rows.into_iter().map(|row| row.seq).collect::<Vec<_>>();
    assert_eq!(seqs(read(Some("one"), 0, 100, false).await), vec![1, 4]);
    assert_eq!(seqs(read(Some("two"), 0, 100, true).await), vec![5, 2]);
    assert_eq!(seqs(read(Some("two"), 2, 100, false).await), vec![5]);
    assert_eq!(seqs(read(None, 2, 2, false).await), vec![3, 4]);
    assert_eq!(seqs(read(None, 1, 2, true).await), vec![5, 4]);
    assert!(read(Some("nowhere"), 0, 100, false).await.is_empty());
    assert!(read(None, 5, 100, false).await.is_empty());
}

//! Snapshots for `regkeeper backup`: SQLite copies the whole database into a new or
//! empty file while it serves, and never over a file that holds something; PostgreSQL
//! refuses, naming pg_dump.

use super::{audit_count, created_user, Subject};

pub(super) async fn snapshots_copy_sqlite_and_refuse_postgres(subject: Subject) {
    let store = &subject.store;
    let alice = created_user(store, "alice").await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("snapshot.db");
    std::fs::File::create(&path).unwrap();
    let taken = store.snapshot_into(&path).await;
    if subject.raw_url.starts_with("postgres") {
        let error = taken.unwrap_err();
        assert_eq!(error.code(), "backup_needs_pg_dump");
        assert!(error.to_string().contains("pg_dump"), "{error}");
        return;
    }
    taken.unwrap();
    let copy = regkeeper::store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let copied = copy.user_by_name("alice").await.unwrap().unwrap();
    assert_eq!(copied, alice.user);
    assert_eq!(audit_count(&copy).await, audit_count(store).await);
    let before = std::fs::read(&path).unwrap();
    assert!(
        store.snapshot_into(&path).await.is_err(),
        "a file that holds something is never overwritten"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

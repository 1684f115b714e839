//! What replicas share of the proxy and the console (migration 0015): grants keep the
//! newest confirmation; the shared cache's index counts, orders and deletes blobs (an
//! eviction only if the blob was not used since it was chosen); a job lease has one
//! holder until it runs out; sign-outs are kept until their session expires.

use super::Subject;

pub(super) async fn proxy_grants_keep_the_newest_confirmation(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.proxy_grant("grant-a").await.unwrap(), None);
    store.record_proxy_grant("grant-a", 5_000).await.unwrap();
    store.record_proxy_grant("grant-a", 4_000).await.unwrap();
    assert_eq!(store.proxy_grant("grant-a").await.unwrap(), Some(5_000));
    store.record_proxy_grant("grant-a", 7_000).await.unwrap();
    store.record_proxy_grant("grant-b", 1_000).await.unwrap();
    assert_eq!(store.proxy_grant("grant-a").await.unwrap(), Some(7_000));
    assert_eq!(store.prune_proxy_grants(2_000).await.unwrap(), 1);
    assert_eq!(store.proxy_grant("grant-b").await.unwrap(), None);
    assert_eq!(store.proxy_grant("grant-a").await.unwrap(), Some(7_000));
}

pub(super) async fn the_cached_blob_index_orders_by_last_use(subject: Subject) {
    let store = &subject.store;
    assert_eq!(store.cached_blob_totals().await.unwrap(), (0, 0));
    assert_eq!(store.cached_blob("sha256:aa").await.unwrap(), None);
    store
        .put_cached_blob("sha256:aa", 100, 1_000)
        .await
        .unwrap();
    store
        .put_cached_blob("sha256:bb", 200, 2_000)
        .await
        .unwrap();
    store
        .put_cached_blob("sha256:cc", 300, 3_000)
        .await
        .unwrap();
    assert_eq!(store.cached_blob_totals().await.unwrap(), (3, 600));
    let row = store.cached_blob("sha256:bb").await.unwrap().unwrap();
    assert_eq!((row.size, row.last_used_at), (200, 2_000));
    store.touch_cached_blob("sha256:aa", 4_000).await.unwrap();
    // A touch never moves the last use back.
    store.touch_cached_blob("sha256:cc", 2_500).await.unwrap();
    let order: Vec<String> = store
        .least_recently_used_blobs(10)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.digest)
        .collect();
    assert_eq!(order, ["sha256:bb", "sha256:cc", "sha256:aa"]);
    assert_eq!(store.least_recently_used_blobs(1).await.unwrap().len(), 1);
    // An eviction that chose `aa` at its old last use leaves it: it was used since.
    assert!(!store
        .delete_cached_blob("sha256:aa", Some(1_000))
        .await
        .unwrap());
    assert!(store
        .delete_cached_blob("sha256:bb", Some(2_000))
        .await
        .unwrap());
    assert!(store.delete_cached_blob("sha256:cc", None).await.unwrap());
    assert!(!store.delete_cached_blob("sha256:cc", None).await.unwrap());
    assert_eq!(store.cached_blob_totals().await.unwrap(), (1, 100));
    // Stored again, a blob is as new.
    store
        .put_cached_blob("sha256:aa", 150, 9_000)
        .await
        .unwrap();
    let row = store.cached_blob("sha256:aa").await.unwrap().unwrap();
    assert_eq!((row.size, row.last_used_at), (150, 9_000));
}

pub(super) async fn a_job_lease_has_one_holder_until_it_runs_out(subject: Subject) {
    let store = &subject.store;
    assert!(store
        .claim_job_lease("sweep", "a", 1_000, 31_000)
        .await
        .unwrap());
    assert!(!store
        .claim_job_lease("sweep", "b", 2_000, 32_000)
        .await
        .unwrap());
    // The holder renews it; another job is another lease.
    assert!(store
        .claim_job_lease("sweep", "a", 20_000, 50_000)
        .await
        .unwrap());
    assert!(store
        .claim_job_lease("other", "b", 20_000, 50_000)
        .await
        .unwrap());
    assert!(!store
        .claim_job_lease("sweep", "b", 49_999, 80_000)
        .await
        .unwrap());
    assert!(store
        .claim_job_lease("sweep", "b", 50_000, 80_000)
        .await
        .unwrap());
    assert!(!store
        .claim_job_lease("sweep", "a", 60_000, 90_000)
        .await
        .unwrap());
}

pub(super) async fn sign_outs_last_until_their_session_expires(subject: Subject) {
    let store = &subject.store;
    assert!(store.sign_outs(0).await.unwrap().is_empty());
    store.record_sign_out("00ff", 10_000, 1_000).await.unwrap();
    store.record_sign_out("00ff", 10_000, 1_000).await.unwrap();
    store.record_sign_out("11ee", 50_000, 2_000).await.unwrap();
    let mut found = store.sign_outs(5_000).await.unwrap();
    found.sort();
    assert_eq!(found, [("00ff".into(), 10_000), ("11ee".into(), 50_000)]);
    assert_eq!(
        store.sign_outs(10_000).await.unwrap(),
        [("11ee".to_owned(), 50_000)]
    );
    // The next sign-out prunes the expired ones.
    store.record_sign_out("22dd", 60_000, 20_000).await.unwrap();
    assert_eq!(store.sign_outs(0).await.unwrap().len(), 2);
}

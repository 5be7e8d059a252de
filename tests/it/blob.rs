//! One blob suite, run on the local directory store and on a real S3 server
//! (s3s-fs, started by ops/test-stack.sh).

use crate::support;

use std::sync::Arc;
use strata::blob::{sha256_hex, BlobError, BlobStore, DirBlobStore, S3BlobStore};

async fn round_trip_and_never_overwrite(store: Arc<dyn BlobStore>) {
    let info = store.put("a/b/one.bin", b"hello".to_vec()).await.unwrap();
    assert_eq!((info.size, info.sha256.clone()), (5, sha256_hex(b"hello")));
    assert_eq!(store.get("a/b/one.bin").await.unwrap(), b"hello");
    assert_eq!(
        store
            .get_verified("a/b/one.bin", &info.sha256)
            .await
            .unwrap(),
        b"hello"
    );
    assert!(store.exists("a/b/one.bin").await.unwrap());
    let again = store.put("a/b/one.bin", b"other".to_vec()).await;
    assert!(matches!(again, Err(BlobError::Exists(_))), "{again:?}");
    assert_eq!(
        store.get("a/b/one.bin").await.unwrap(),
        b"hello",
        "the first write stays"
    );
}

async fn missing_keys_and_deletes(store: Arc<dyn BlobStore>) {
    assert!(matches!(
        store.get("nope").await,
        Err(BlobError::NotFound(_))
    ));
    assert!(!store.exists("nope").await.unwrap());
    assert!(matches!(
        store.delete("nope").await,
        Err(BlobError::NotFound(_))
    ));
    store.put("gone", vec![1, 2, 3]).await.unwrap();
    store.delete("gone").await.unwrap();
    assert!(matches!(
        store.get("gone").await,
        Err(BlobError::NotFound(_))
    ));
    store
        .put("gone", vec![4])
        .await
        .expect("a deleted key can be written again");
}

async fn lists_by_prefix_sorted(store: Arc<dyn BlobStore>) {
    for key in ["crdt/x/b", "crdt/x/a", "crdt/y/c", "other/d"] {
        store.put(key, key.as_bytes().to_vec()).await.unwrap();
    }
    assert_eq!(
        store.list("crdt/x/").await.unwrap(),
        ["crdt/x/a", "crdt/x/b"]
    );
    assert_eq!(store.list("crdt/").await.unwrap().len(), 3);
    assert!(store.list("none/").await.unwrap().is_empty());
}

async fn checksums_catch_corruption(store: Arc<dyn BlobStore>) {
    store.put("sum", b"data".to_vec()).await.unwrap();
    let wrong = sha256_hex(b"other data");
    assert!(matches!(
        store.get_verified("sum", &wrong).await,
        Err(BlobError::Corrupt(_))
    ));
}

async fn bad_keys_are_refused(store: Arc<dyn BlobStore>) {
    for key in ["", "/abs", "a/../b", "a//b", "tab\there"] {
        assert!(
            matches!(
                store.put(key, vec![1]).await,
                Err(BlobError::InvalidKey(..))
            ),
            "{key:?}"
        );
        assert!(
            matches!(store.get(key).await, Err(BlobError::InvalidKey(..))),
            "{key:?}"
        );
    }
}

async fn concurrent_puts_of_one_key_have_one_winner(store: Arc<dyn BlobStore>) {
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put("race", vec![i; 64]).await })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => winners += 1,
            Err(BlobError::Exists(_)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(winners, 1);
    let stored = store.get("race").await.unwrap();
    assert!(
        stored.iter().all(|b| *b == stored[0]),
        "one writer's bytes, whole"
    );
}

async fn empty_and_large_objects(store: Arc<dyn BlobStore>) {
    store.put("empty", Vec::new()).await.unwrap();
    assert!(store.get("empty").await.unwrap().is_empty());
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let info = store.put("big", big.clone()).await.unwrap();
    assert_eq!(store.get_verified("big", &info.sha256).await.unwrap(), big);
}

fn dir_store() -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(DirBlobStore::new(dir.path()).unwrap()), dir)
}

fn s3_store() -> Arc<dyn BlobStore> {
    support::s3_blobs()
}

macro_rules! blob_suite {
    ($($case:ident),* $(,)?) => {
        mod dir {
            $(#[tokio::test]
            async fn $case() {
                let (store, _dir) = super::dir_store();
                super::$case(store).await
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $case() {
                if super::support::skip_without(super::support::S3) {
                    return;
                }
                super::$case(super::s3_store()).await
            })*
        }
    };
}

async fn a_store_that_is_there_answers_its_ping(store: Arc<dyn BlobStore>) {
    store.ping().await.unwrap();
}

blob_suite!(
    a_store_that_is_there_answers_its_ping,
    round_trip_and_never_overwrite,
    missing_keys_and_deletes,
    lists_by_prefix_sorted,
    checksums_catch_corruption,
    bad_keys_are_refused,
    empty_and_large_objects,
);

/// Directory store only: it decides the race itself (hard links). On S3 the
/// outcome is the server's (If-None-Match); s3s-fs has no conditional writes
/// and fails some of the racing requests mid-stream, which says nothing of
/// MinIO or AWS.
#[tokio::test]
async fn concurrent_puts_on_a_directory_have_one_winner() {
    let (store, _dir) = dir_store();
    concurrent_puts_of_one_key_have_one_winner(store).await
}

#[tokio::test]
async fn the_s3_server_checks_signatures() {
    if support::skip_without(support::S3) {
        return;
    }
    let endpoint = std::env::var("STRATA_TEST_S3_ENDPOINT").expect("run through ops/test.sh");
    let bucket = std::env::var("STRATA_TEST_S3_BUCKET").unwrap();
    let wrong =
        aws_sdk_s3::config::Credentials::new("strata-test", "not-the-secret", None, None, "test");
    let store = S3BlobStore::new(&bucket, "sig", Some(&endpoint), "us-east-1", wrong).unwrap();
    let refused = store.put("k", vec![1]).await;
    assert!(matches!(refused, Err(BlobError::Backend(_))), "{refused:?}");
}

#[tokio::test]
async fn corrupt_files_on_disk_are_caught() {
    let (store, dir) = dir_store();
    let info = store.put("doc/snap", b"state".to_vec()).await.unwrap();
    std::fs::write(dir.path().join("doc/snap"), b"tampered").unwrap();
    assert!(matches!(
        store.get_verified("doc/snap", &info.sha256).await,
        Err(BlobError::Corrupt(_))
    ));
}

/// Readiness: a blob directory gone, or something else in its place, fails
/// the ping; made again, it answers.
#[tokio::test]
async fn a_blob_directory_that_is_gone_fails_its_ping() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = DirBlobStore::new(&root).unwrap();
    store.ping().await.unwrap();
    std::fs::remove_dir(&root).unwrap();
    assert!(store.ping().await.is_err());
    std::fs::write(&root, b"a file").unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    store.ping().await.unwrap();
}

/// Readiness: a bucket that does not exist, a key the server refuses and
/// a server that is not there all fail the ping, each saying why.
#[tokio::test]
async fn an_s3_bucket_that_cannot_be_used_fails_its_ping() {
    if support::skip_without(support::S3) {
        return;
    }
    let endpoint = std::env::var("STRATA_TEST_S3_ENDPOINT").expect("run through ops/test.sh");
    let bucket = std::env::var("STRATA_TEST_S3_BUCKET").unwrap();
    let credentials = |secret: String| {
        aws_sdk_s3::config::Credentials::new(
            std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
            secret,
            None,
            None,
            "test",
        )
    };
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    let store = |bucket: &str, endpoint: &str, secret: &str| {
        S3BlobStore::new(
            bucket,
            "ping",
            Some(endpoint),
            "us-east-1",
            credentials(secret.to_string()),
        )
        .unwrap()
    };
    store(&bucket, &endpoint, &secret).ping().await.unwrap();
    let missing = store("strata-no-such-bucket", &endpoint, &secret)
        .ping()
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    assert!(store(&bucket, &endpoint, "not-the-secret")
        .ping()
        .await
        .is_err());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("http://127.0.0.1:{port}");
    assert!(store(&bucket, &gone, &secret).ping().await.is_err());
}

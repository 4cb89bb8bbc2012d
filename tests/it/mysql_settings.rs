//! taskd on a MySQL server configured to lose data: sessions force
//! `autocommit = 1` (else a vote saved outside a transaction is not durable
//! when save_vote returns), and a server whose InnoDB does not flush at
//! every commit is refused unless the operator insists.

use sqlx::Connection;
use taskd::store::{Store, StoreError, StoreOptions};

use crate::mariadb::Mariadb;

/// One server with `autocommit = 0` and `innodb_flush_log_at_trx_commit = 2`:
/// refused by default with a message naming the setting and the flag; with
/// `--unsafe-allow-lossy-database` it opens, and a vote saved through the
/// store is visible to another connection at once (committed, not left in
/// an open implicit transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_mysql_settings_are_refused_or_overridden() {
    let server = Mariadb::start(&["--autocommit=0", "--innodb-flush-log-at-trx-commit=2"]).await;
    let url = server.url("taskd_lossy");

    let refused = Store::connect(&url).await.err().expect("refused");
    assert!(
        matches!(refused, StoreError::LossyDatabase(_)),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("innodb_flush_log_at_trx_commit")
            && text.contains("--unsafe-allow-lossy-database"),
        "says what and how: {text}"
    );

    let options = StoreOptions {
        allow_lossy_database: true,
    };
    let store = Store::connect_with(&url, options).await.expect("allowed");
    store
        .put_raft_state("vote", b"vote-of-term-7")
        .await
        .expect("the vote, as save_vote writes it");

    let mut other = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::query("SET SESSION autocommit = 1")
        .execute(&mut other)
        .await
        .unwrap();
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT value FROM raft_state WHERE name = 'vote'")
        .fetch_all(&mut other)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![(b"vote-of-term-7".to_vec(),)],
        "the vote is committed when save_vote returns"
    );
    store.close().await;
}

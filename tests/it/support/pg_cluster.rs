//! A private PostgreSQL primary with a streaming standby (made with `pg_basebackup`), for the
//! failover tests (`forwarder` plays one address moved between them). Plain TCP, trust authentication, their own ports and directories
//! under the temp dir; the shared server is never touched.
//!
//! Each server runs in the foreground as a child of the test (through `runuser` as `postgres`
//! when the tests run as root). A test stops, kills, starts and promotes them; whatever still
//! runs is stopped (fast, then harder) and the directories removed when the cluster is dropped,
//! even while a failed test unwinds.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::pg_node::PgNode;
use super::private_postgres::{as_postgres, bin_dir, free_port, give_to_postgres};

/// How long initdb, a base backup, a start or a promotion may take on a busy machine.
const SLOW_STEP: Duration = Duration::from_secs(120);

/// Set (to anything) to keep the servers' directories after the test, to read their logs.
const KEEP_DIRS_VAR: &str = "HERALD_KEEP_BROKER_DIRS";

/// Positions below this were numbered one by one since the log began; an epoch's jump goes far
/// beyond it (to about the clock in microseconds).
pub const SMALL_POSITIONS: i64 = 1 << 32;

/// Replication as the test wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// The primary's commits wait for the standby's flush (`synchronous_standby_names = '*'`).
    Synchronous,
    /// The default: the standby may lag behind.
    Asynchronous,
}

/// A primary and its standby.
pub struct PgCluster {
    dir: PathBuf,
    pub primary: PgNode,
    pub standby: PgNode,
}

impl PgCluster {
    /// A primary alone (its standby is never made), for the crash tests.
    pub async fn primary_only(tag: &str) -> PgCluster {
        Self::make(tag, Replication::Asynchronous, false).await
    }

    /// initdb, start the primary, `pg_basebackup -R` the standby from it, start the standby and
    /// wait until it streams.
    pub async fn start(tag: &str, replication: Replication) -> PgCluster {
        Self::make(tag, replication, true).await
    }

    async fn make(tag: &str, replication: Replication, with_standby: bool) -> PgCluster {
        let dir =
            std::env::temp_dir().join(format!("herald-pgha-{tag}-{:08x}", rand::random::<u32>()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        give_to_postgres(&dir);
        let node = |name: &'static str| {
            let node_dir = dir.join(name);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&node_dir)
                .expect("node dir");
            give_to_postgres(&node_dir);
            let port = free_port();
            let mut settings = vec![
                format!("port={port}"),
                "listen_addresses=127.0.0.1".into(),
                format!("unix_socket_directories={}", node_dir.display()),
                // A killed postmaster loses nothing the OS has: fsync off is only about
                // machine crashes, which these tests do not make.
                "fsync=off".into(),
                "full_page_writes=off".into(),
                "shared_buffers=16MB".into(),
                "wal_level=replica".into(),
                "max_wal_senders=5".into(),
                "wal_keep_size=256MB".into(),
                "hot_standby=on".into(),
                "wal_receiver_status_interval=1s".into(),
                "max_connections=100".into(),
            ];
            // Only the first primary waits for a standby: the promoted one has none.
            if replication == Replication::Synchronous && name == "primary" {
                settings.push("synchronous_standby_names=*".into());
                settings.push("synchronous_commit=on".into());
            }
            PgNode {
                name,
                dir: node_dir,
                port,
                settings,
                server: None,
            }
        };
        let mut cluster = PgCluster {
            primary: node("primary"),
            standby: node("standby"),
            dir,
        };
        cluster.init_primary().await;
        cluster.primary.start().await;
        if !with_standby {
            return cluster;
        }
        cluster.base_backup().await;
        cluster.standby.start().await;
        cluster.await_streaming().await;
        cluster
    }

    async fn init_primary(&self) {
        let output = as_postgres(&bin_dir().join("initdb"))
            .arg("-D")
            .arg(self.primary.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let hba = self.primary.data().join("pg_hba.conf");
        fs::write(
            &hba,
            "local all all trust\n\
             host all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        give_to_postgres(&hba);
    }

    async fn base_backup(&self) {
        let output = as_postgres(&bin_dir().join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-X", "stream", "-R"])
            .args(["--no-sync", "-c", "fast", "-p"])
            .arg(self.primary.port.to_string())
            .arg("-D")
            .arg(self.standby.data())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("pg_basebackup runs");
        assert!(
            output.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn await_streaming(&self) {
        let started = Instant::now();
        while self
            .primary
            .lsn("SELECT count(*) AS lsn FROM pg_stat_replication WHERE state = 'streaming'")
            .await
            .unwrap_or(0)
            < 1
        {
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.standby.report("does not stream")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub async fn await_standby_caught_up(&self) {
        let target = self
            .primary
            .lsn("SELECT (pg_current_wal_lsn() - '0/0')::bigint AS lsn")
            .await
            .expect("the primary's position");
        let started = Instant::now();
        loop {
            let replayed = self
                .standby
                .lsn("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint AS lsn")
                .await
                .unwrap_or(0);
            if replayed >= target {
                return;
            }
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.standby.report("does not catch up")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `database` on both servers, libpq's way: the one that takes writes is used.
    pub fn multi_host_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.standby.stop_now();
        self.primary.stop_now();
        if std::env::var_os(KEEP_DIRS_VAR).is_some() {
            eprintln!("private PostgreSQL cluster: kept {}", self.dir.display());
        } else if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "private PostgreSQL cluster: removing {}: {error}",
                self.dir.display()
            );
        }
    }
}

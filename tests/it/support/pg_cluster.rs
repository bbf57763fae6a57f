//! A private PostgreSQL primary with a streaming standby (made with `pg_basebackup`), for the
//! failover tests, and a `socat` forwarder that plays one address moved between them (a virtual
//! IP, HAProxy, a pooler). Plain TCP, trust authentication, their own ports and directories
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

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use herald::store::database;
use herald::store::pg_tls::PgTls;

use super::private_broker::{signal, stop_with_parent, tail};
use super::private_postgres::{as_postgres, bin_dir, free_port, give_to_postgres};

/// How long initdb, a base backup, a start or a promotion may take on a busy machine.
const SLOW_STEP: Duration = Duration::from_secs(120);

/// How long a server may take to stop before it is stopped harder.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

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

/// One server of the pair.
pub struct PgNode {
    pub name: &'static str,
    dir: PathBuf,
    pub port: u16,
    settings: Vec<String>,
    server: Option<tokio::process::Child>,
}

impl PgNode {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A URL of `database` on this server alone.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server and waits until it takes connections (a standby: once consistent).
    pub async fn start(&mut self) {
        assert!(self.server.is_none(), "{} already runs", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("its log");
        let log_err = log.try_clone().expect("its log, twice");
        let mut command = as_postgres(&bin_dir().join("postgres"));
        command.arg("-D").arg(self.data());
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        stop_with_parent(&mut command);
        self.server = Some(command.spawn().expect("postgres runs"));
        let started = Instant::now();
        loop {
            let probe = tokio::time::timeout(
                Duration::from_secs(5),
                database::connect(&self.url("postgres"), &PgTls::disabled()),
            )
            .await;
            if let Ok(Ok(_)) = probe {
                return;
            }
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    self.server = None;
                    panic!("{}", self.report(&format!("exited ({status}) at start")));
                }
            }
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.report("takes no connection")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn postmaster(&self) -> Option<u32> {
        fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A fast shutdown (SIGINT), awaited.
    pub async fn stop_fast(&mut self) {
        self.stop_with(libc::SIGINT).await;
    }

    /// A crash: SIGKILL to the postmaster and then to every process it had started (as a
    /// machine crash would take them all), awaited, so the server can be started again.
    pub async fn kill(&mut self) {
        let children = self.postmaster().map(children_of).unwrap_or_default();
        self.stop_with(libc::SIGKILL).await;
        for child in &children {
            signal(*child, libc::SIGKILL);
        }
        let started = Instant::now();
        while children
            .iter()
            .any(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            && started.elapsed() < STOP_DEADLINE
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop_with(&mut self, sig: libc::c_int) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        match self.postmaster() {
            Some(pid) => signal(pid, sig),
            None => {
                let _ = server.start_kill();
            }
        }
        if tokio::time::timeout(STOP_DEADLINE, server.wait())
            .await
            .is_err()
        {
            let _ = server.start_kill();
            let _ = server.wait().await;
        }
    }

    /// `pg_ctl promote`, then waits until the server takes writes.
    pub async fn promote(&self) {
        let output = as_postgres(&bin_dir().join("pg_ctl"))
            .args(["promote", "-w", "-t", "120", "-D"])
            .arg(self.data())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("pg_ctl runs");
        assert!(
            output.status.success(),
            "pg_ctl promote: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.report("")
        );
        let started = Instant::now();
        while self.is_in_recovery().await != Some(false) {
            assert!(
                started.elapsed() < SLOW_STEP,
                "{}",
                self.report("not promoted")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connect(&self) -> Option<AsyncPgConnection> {
        database::connect(&self.url("postgres"), &PgTls::disabled())
            .await
            .ok()
    }

    async fn is_in_recovery(&self) -> Option<bool> {
        #[derive(QueryableByName)]
        struct Recovery {
            #[diesel(sql_type = Bool)]
            recovering: bool,
        }
        let mut conn = self.connect().await?;
        let found: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS recovering")
            .get_result(&mut conn)
            .await
            .ok()?;
        Some(found.recovering)
    }

    async fn lsn(&self, query: &str) -> Option<i64> {
        #[derive(QueryableByName)]
        struct Lsn {
            #[diesel(sql_type = BigInt)]
            lsn: i64,
        }
        let mut conn = self.connect().await?;
        let found: Lsn = diesel::sql_query(query).get_result(&mut conn).await.ok()?;
        Some(found.lsn)
    }

    fn report(&self, why: &str) -> String {
        format!(
            "PostgreSQL {} in {} (port {}) {why}\n--- end of its log ---\n{}",
            self.name,
            self.dir.display(),
            self.port,
            tail(&self.log_file())
        )
    }

    /// Stops it (blocking, for `Drop`): fast, then immediate, then SIGKILL.
    fn stop_now(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let postmaster = self.postmaster();
        for (sig, within) in [
            (libc::SIGINT, STOP_DEADLINE),
            (libc::SIGQUIT, Duration::from_secs(5)),
            (libc::SIGKILL, Duration::from_secs(5)),
        ] {
            match postmaster {
                Some(pid) => signal(pid, sig),
                None => {
                    let _ = server.start_kill();
                }
            }
            let started = Instant::now();
            while started.elapsed() < within {
                if !matches!(server.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = server.start_kill();
    }
}

/// The processes whose parent is `parent` (read from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the command may hold blanks and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
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

/// One TCP address forwarded (by `socat`) to a server, and moved to another on demand.
pub struct Forwarder {
    pub port: u16,
    socat: Option<tokio::process::Child>,
}

impl Forwarder {
    /// Listens on a free port and forwards to `target`.
    pub async fn to(target: u16) -> Forwarder {
        let mut forwarder = Forwarder {
            port: free_port(),
            socat: None,
        };
        forwarder.point_at(target).await;
        forwarder
    }

    /// Stops forwarding (and cuts every connection through it), then forwards to `target`.
    pub async fn point_at(&mut self, target: u16) {
        if let Some(mut socat) = self.socat.take() {
            kill_group(&socat);
            let _ = socat.start_kill();
            let _ = tokio::time::timeout(STOP_DEADLINE, socat.wait()).await;
        }
        let mut command = tokio::process::Command::new("/usr/bin/socat");
        command
            .arg(format!(
                "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork",
                self.port
            ))
            .arg(format!("TCP:127.0.0.1:{target}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        self.socat = Some(command.spawn().expect("socat runs"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < SLOW_STEP, "socat does not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills socat and the children it forked for each connection (blocking: for `Drop`).
    fn cut(&mut self) {
        let Some(mut socat) = self.socat.take() else {
            return;
        };
        kill_group(&socat);
        let _ = socat.start_kill();
        let started = Instant::now();
        while matches!(socat.try_wait(), Ok(None)) && started.elapsed() < STOP_DEADLINE {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGKILL to socat's process group: socat and the child it forked for each connection.
fn kill_group(socat: &tokio::process::Child) {
    if let Some(pid) = socat.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: kill(2) on our own child's process group; no memory is touched.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.cut();
    }
}

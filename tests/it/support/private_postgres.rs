//! A private PostgreSQL server for the TLS tests: its own data directory (under the temp dir),
//! its own port, TLS on with a certificate the test made, and a `pg_hba.conf` that trusts
//! `hostssl` connections and rejects every plain one, so a test that gets in has proved its
//! connection encrypted. The shared server (127.0.0.1:5432) is never touched.
//!
//! The server runs in the foreground as a child of the test process (through `runuser` as the
//! `postgres` user when the tests run as root: PostgreSQL refuses to run as root), with its
//! output in a file of ours. It is stopped (fast shutdown, then harder) and its directory
//! removed when dropped, even while a failed test unwinds; on Linux it is also told to stop
//! when the test process dies without dropping it.

use std::ffi::CString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald::config::DatabaseSettings;
use herald::store::database;
use herald::store::pg_tls::PgTls;

use super::certs::Issued;
use super::private_broker::{signal, stop_with_parent, tail};

/// How long initdb, or the server's start, may take on a busy two-core machine.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// How long the server may take to stop before it is stopped harder.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// How long one readiness probe (a TLS connection) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many times the server is started on a fresh port when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// Set (to anything) to keep the server's directory after the test, to read its log.
const KEEP_DIRS_VAR: &str = "HERALD_KEEP_BROKER_DIRS";

/// One private PostgreSQL server on 127.0.0.1, user `postgres`, TLS only.
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    /// `postgres` (or `runuser`, which waits for it), while it runs.
    server: Option<tokio::process::Child>,
}

impl PrivatePostgres {
    /// Creates a cluster and starts it with `certificate` as its server certificate; returns once
    /// it accepts TLS connections. Panics (with the end of its log) if it cannot.
    pub async fn start(tag: &str, certificate: &Issued) -> PrivatePostgres {
        let bin = bin_dir();
        let dir =
            std::env::temp_dir().join(format!("herald-pg-{tag}-{:08x}", rand::random::<u32>()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let mut server = PrivatePostgres {
            dir,
            port: 0,
            server: None,
        };
        give_to_postgres(&server.dir);
        server.init(&bin, certificate).await;
        for _ in 0..PORT_ATTEMPTS {
            server.port = free_port();
            match server.boot(&bin).await {
                Ok(()) => return server,
                Err(report) if report.contains("Address already in use") => continue,
                Err(report) => panic!("{report}"),
            }
        }
        panic!("private PostgreSQL {tag}: the ports picked were taken every time");
    }

    /// A URL for `database` on this server, as user `postgres`, ending with `query` (say
    /// `?sslmode=verify-full`); `host` is `127.0.0.1` or `localhost`.
    pub fn url(&self, host: &str, database: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}{query}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// initdb, the certificate and key (owned by the server's user, the key 0600, as
    /// PostgreSQL demands), and a `pg_hba.conf` that admits TLS connections only.
    async fn init(&self, bin: &Path, certificate: &Issued) {
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            .args(["--no-sync", "--no-instructions"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(START_DEADLINE, initdb.output())
            .await
            .unwrap_or_else(|_| panic!("initdb: over {START_DEADLINE:?}"))
            .unwrap_or_else(|e| panic!("initdb: cannot run {}: {e}", bin.display()));
        assert!(
            output.status.success(),
            "initdb: {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for (from, to, mode) in [
            (&certificate.cert_file, "server.crt", 0o644),
            (&certificate.key_file, "server.key", 0o600),
        ] {
            let path = self.dir.join(to);
            fs::copy(from, &path).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
            give_to_postgres(&path);
        }
        let hba = self.data().join("pg_hba.conf");
        fs::write(
            &hba,
            "# herald's TLS tests: TLS connections only.\n\
             local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 reject\n",
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", hba.display()));
        give_to_postgres(&hba);
    }

    /// Starts the server and waits until a TLS connection gets in.
    async fn boot(&mut self, bin: &Path) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .map_err(|e| format!("opening its log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("sharing its log: {e}"))?;
        let dir = self.dir.display().to_string();
        let mut command = as_postgres(&bin.join("postgres"));
        command.arg("-D").arg(self.data());
        for setting in [
            format!("port={}", self.port),
            "listen_addresses=127.0.0.1".into(),
            format!("unix_socket_directories={dir}"),
            "ssl=on".into(),
            format!("ssl_cert_file={dir}/server.crt"),
            format!("ssl_key_file={dir}/server.key"),
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "shared_buffers=16MB".into(),
        ] {
            command.arg("-c").arg(setting);
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        stop_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.join("postgres").display()))?;
        self.server = Some(child);
        self.await_ready().await
    }

    async fn await_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let url = self.url("127.0.0.1", "postgres", "?sslmode=require");
        let tls = PgTls::new(&settings_for(&url, None)).expect("TLS for the probe");
        loop {
            let attempt = tokio::time::timeout(PROBE_TIMEOUT, database::connect(&url, &tls)).await;
            let last_error = match attempt {
                Ok(Ok(_connection)) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
            };
            let exited = match self.server.as_mut() {
                Some(server) => server.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                self.server = None;
                return Err(self.report(&format!("exited ({status}) before accepting connections")));
            }
            if started.elapsed() > START_DEADLINE {
                return Err(self.report(&format!(
                    "accepts no TLS connection after {START_DEADLINE:?}; last: {last_error}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn report(&self, why: &str) -> String {
        format!(
            "private PostgreSQL in {} (port {}) {why}\n--- end of {} ---\n{}",
            self.dir.display(),
            self.port,
            self.log_file().display(),
            tail(&self.log_file())
        )
    }

    /// The postmaster's pid, from its pid file.
    fn postmaster(&self) -> Option<u32> {
        postmaster_pid(&self.data())
    }

    /// Stops the server (blocking: this is for `Drop`): see [`stop_server`].
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let what = format!("private PostgreSQL in {}", self.dir.display());
            stop_server(&mut server, self.postmaster(), &what);
        }
    }
}

/// The pid of the postmaster running the cluster in `data`, from its pid file.
pub(super) fn postmaster_pid(data: &std::path::Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Stops a PostgreSQL server (blocking: this is for `Drop`): a fast shutdown, then an immediate
/// one, then SIGKILL, each given its time; signals go to its postmaster (`pid`, from its
/// `postmaster.pid`), or to the process itself when that is unknown.
pub(super) fn stop_server(server: &mut tokio::process::Child, postmaster: Option<u32>, what: &str) {
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
        eprintln!("{what}: still running after signal {sig}");
    }
    let _ = server.start_kill();
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os(KEEP_DIRS_VAR).is_some() {
            eprintln!("private PostgreSQL: kept {}", self.dir.display());
        } else if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "private PostgreSQL: removing {}: {error}",
                self.dir.display()
            );
        }
    }
}

/// Database settings for `url`, trusting `ca_file` (for `PgTls::new`).
pub fn settings_for(url: &str, ca_file: Option<&str>) -> DatabaseSettings {
    DatabaseSettings {
        url: url.to_owned(),
        create_if_missing: true,
        pool_size: 4,
        acquire_timeout_ms: 5000,
        statement_timeout_ms: 0,
        ca_file: ca_file.map(str::to_owned),
    }
}

/// PostgreSQL's programs: `HERALD_PG_BIN`, else the newest `/usr/lib/postgresql/<N>/bin`
/// (Debian), else whatever `PATH` finds.
pub(super) fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_PG_BIN") {
        return PathBuf::from(dir);
    }
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).unwrap_or_default()
}

fn running_as_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as the `postgres` user when the tests run as root (PostgreSQL
/// refuses root), as the tests' own user otherwise.
pub(super) fn as_postgres(program: &Path) -> tokio::process::Command {
    let mut command = if running_as_root() {
        let mut command = tokio::process::Command::new(runuser());
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        tokio::process::Command::new(program)
    };
    for name in [
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "PGDATA",
        "PGPORT",
    ] {
        command.env_remove(name);
    }
    command
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// Hands a file or directory to the `postgres` user when the tests run as root.
pub(super) fn give_to_postgres(path: &Path) {
    if !running_as_root() {
        return;
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam reads the NUL-terminated name and returns a pointer to static storage
    // (or null), read at once, before any other call could overwrite it.
    let ids = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    };
    let (uid, gid) = ids.expect("a `postgres` user to run the private PostgreSQL as");
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown postgres {}: {e}", path.display()));
}

/// A port free on 127.0.0.1 right now, below the kernel's ephemeral range.
pub(super) fn free_port() -> u16 {
    loop {
        let port = rand::random_range(12_000..32_000u16);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

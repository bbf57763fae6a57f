//! Private RabbitMQ nodes for fault tests. A test that breaks its broker (stops it, kills it,
//! loses one node of a cluster) gets nodes of its own: free ports, its own data, logs,
//! configuration and Erlang cookie, so neither the shared broker (rabbit@localhost on 5672)
//! nor the tests running beside it notice. A node is stopped and its directory removed when
//! it is dropped, even while a failed test unwinds.
//!
//! Each node runs `rabbitmq-server` in the foreground as a child of the test process (not
//! `-detached`): what it prints before its log is set up (a port in use, say) lands in a file
//! of ours, an early exit is seen at once instead of after a deadline, and the nodes stop when
//! the test process dies without dropping them: Ctrl-C reaches the whole process group, and on
//! Linux the kernel signals the script when its parent is killed (by a CI timeout, say).
//! Only the nodes' directories (a few hundred KB each, under the temp dir) are left then.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

/// How long a node may take to boot, join a cluster or start its app again: a few seconds on
/// an idle machine, far more when a CI runner's two cores also build and run other tests.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long one `rabbitmqctl` call may take (each boots an Erlang VM of its own).
const CTL_DEADLINE: Duration = Duration::from_secs(60);

/// How long a node may take to stop gracefully before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// How long one readiness probe (an AMQP handshake) may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How many times a node is booted on fresh ports when the ones picked were taken meanwhile
/// (they are free when picked, but the node binds them only seconds later).
const PORT_ATTEMPTS: usize = 3;

/// How much of the end of a node's output and log a failure message quotes.
const TAIL_BYTES: u64 = 3000;

/// How many of the errors a node printed first a failure message quotes.
const FIRST_ERRORS: usize = 12;

/// Set (to anything) to keep nodes' directories after the test, to read their logs.
const KEEP_DIRS_VAR: &str = "HERALD_KEEP_BROKER_DIRS";

/// What a node that also listens with TLS is given: the CA it trusts for client certificates,
/// its own certificate and key (PEM files), and whether it demands a client certificate.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub require_client_cert: bool,
}

/// One private RabbitMQ node, reachable as guest/guest on 127.0.0.1.
pub struct PrivateBroker {
    node: String,
    port: u16,
    dist_port: u16,
    /// The TLS listener's port, for a node started with [`PrivateBroker::start_tls`].
    tls_port: Option<u16>,
    dir: PathBuf,
    /// The `rabbitmq-server` script, while the node's VM runs (it waits for the VM).
    server: Option<tokio::process::Child>,
    /// Whether the script was sent SIGTERM already: once is enough (a second one while its
    /// handler runs would only run the handler again).
    stop_signalled: bool,
}

/// Why a boot failed, and whether booting again on other ports may help.
struct BootFailure {
    report: String,
    ports_taken: bool,
}

impl PrivateBroker {
    /// Boots a node named `herald-<tag>-<random>@localhost` and waits until it accepts AMQP
    /// connections. Panics (with the end of the node's output and log) if it cannot.
    pub async fn start(tag: &str) -> PrivateBroker {
        Self::start_with_cookie(tag, &new_cookie()).await
    }

    /// [`PrivateBroker::start`], with a TLS listener as well (see [`Self::amqps_url`]); the
    /// plain one stays, for the readiness probe and `rabbitmqctl`'s fellow tests.
    pub async fn start_tls(tag: &str, tls: &BrokerTls) -> PrivateBroker {
        Self::start_with(tag, &new_cookie(), Some(tls)).await
    }

    /// [`PrivateBroker::start`] with a given Erlang cookie: the nodes of a cluster share one.
    async fn start_with_cookie(tag: &str, cookie: &str) -> PrivateBroker {
        Self::start_with(tag, cookie, None).await
    }

    async fn start_with(tag: &str, cookie: &str, tls: Option<&BrokerTls>) -> PrivateBroker {
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut broker = Self::prepare(tag, cookie, tls);
            match broker.boot().await {
                Ok(()) => return broker,
                Err(failure) if failure.ports_taken => taken.push(format!(
                    "{}/{}/{:?}",
                    broker.port, broker.dist_port, broker.tls_port
                )),
                Err(failure) => panic!("{}", failure.report),
            }
        }
        panic!("private RabbitMQ node {tag}: the ports picked were taken every time: {taken:?}");
    }

    /// Picks the node's name and ports and writes its directory: configuration of its own,
    /// so nothing is read from /etc/rabbitmq (whose listener is the shared node's 5672).
    fn prepare(tag: &str, cookie: &str, tls: Option<&BrokerTls>) -> PrivateBroker {
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let short = format!("herald-{tag}-{:08x}", rand::random::<u32>());
        let (port, dist_port) = free_port_pair();
        let tls_port = tls.map(|_| loop {
            let (one, _) = free_port_pair();
            if one != port && one != dist_port {
                break one;
            }
        });
        let dir = std::env::temp_dir().join(&short);
        // 0700: the directory holds the cookie, which lets anyone who reads it run code on
        // the node. Made before the broker exists, so that a name already taken fails here
        // instead of having the broker's drop remove a directory that is not its own.
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let broker = PrivateBroker {
            node: format!("{short}@localhost"),
            port,
            dist_port,
            tls_port,
            dir,
            server: None,
            stop_signalled: false,
        };
        let home = broker.dir.join("home");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&home)
            .unwrap_or_else(|e| panic!("creating {}: {e}", home.display()));
        // Erlang refuses a cookie file that others can read.
        let cookie_path = home.join(".erlang.cookie");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&cookie_path)
            .and_then(|mut file| file.write_all(cookie.as_bytes()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", cookie_path.display()));
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\n");
        if let (Some(tls), Some(tls_port)) = (tls, tls_port) {
            let verify = if tls.require_client_cert {
                "verify_peer"
            } else {
                "verify_none"
            };
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = {verify}\n\
                 ssl_options.fail_if_no_peer_cert = {}\n",
                tls.ca_file.display(),
                tls.cert_file.display(),
                tls.key_file.display(),
                tls.require_client_cert,
            ));
        }
        let files = [
            ("rabbitmq.conf", conf),
            ("advanced.config", "[].\n".to_owned()),
            ("enabled_plugins", "[].\n".to_owned()),
            (
                "rabbitmq-env.conf",
                "# Empty on purpose: stands in for /etc/rabbitmq/rabbitmq-env.conf, which \
                 names the shared node.\n"
                    .to_owned(),
            ),
        ];
        for (name, contents) in files {
            let path = broker.dir.join(name);
            fs::write(&path, contents)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        broker
    }

    /// The node's Erlang name, `herald-<tag>-<random>@localhost`.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The node's AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The node's AMQP URL, guest/guest on the default vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The node's `amqps://` URL (its TLS listener, on 127.0.0.1), guest/guest on the default
    /// vhost; panics for a node started without TLS.
    pub fn amqps_url(&self) -> String {
        let port = self
            .tls_port
            .unwrap_or_else(|| panic!("{}: started without TLS", self.node));
        format!("amqps://guest:guest@127.0.0.1:{port}/%2f")
    }

    /// The node's directory (data, logs, configuration), removed when the node is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The OS pid of the node's Erlang VM, while it runs.
    pub fn os_pid(&self) -> Option<u32> {
        self.server.as_ref()?;
        fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the RabbitMQ application: clients are disconnected and AMQP connections refused,
    /// but the Erlang VM keeps running (and stays in its cluster), so [`Self::start_app`]
    /// brings the broker back within seconds — the quick "broker down, then back".
    pub async fn stop_app(&self) {
        self.rabbitmqctl(&["stop_app"]).await;
    }

    /// Starts the application again after [`Self::stop_app`]; returns once AMQP connections
    /// are accepted.
    pub async fn start_app(&mut self) {
        self.rabbitmqctl(&["start_app"]).await;
        if let Err(failure) = self.await_amqp().await {
            panic!("{}", failure.report);
        }
    }

    /// Stops the whole node (its VM exits); [`Self::restart`] boots it again.
    pub async fn stop(&mut self) {
        self.rabbitmqctl(&["stop"]).await;
        self.await_exit("stopped").await;
    }

    /// Kills the node's VM outright (SIGKILL), as a crash or a pulled plug would: no
    /// connection is closed politely. [`Self::restart`] boots it again.
    pub async fn kill(&mut self) {
        let pid = self
            .os_pid()
            .unwrap_or_else(|| panic!("{}: not running (or no pid file yet)", self.node));
        signal(pid, libc::SIGKILL);
        self.await_exit("killed").await;
    }

    /// Boots the node again after [`Self::stop`] or [`Self::kill`], with its name, ports and
    /// data; returns once AMQP connections are accepted. (A cluster member whose peers all
    /// stopped after it waits for them to come back: restart the last one stopped first.)
    pub async fn restart(&mut self) {
        assert!(
            self.server.is_none(),
            "{}: restart() after stop() or kill(), not while it runs",
            self.node
        );
        if let Err(failure) = self.boot().await {
            panic!("{}", failure.report);
        }
    }

    /// Runs `rabbitmqctl -n <this node> args…` and returns its standard output; panics if it
    /// fails or takes longer than a minute. Only this node's cookie is in its HOME, so it
    /// can reach no other node (the shared one included).
    pub async fn rabbitmqctl(&self, args: &[&str]) -> String {
        match self.try_rabbitmqctl(args).await {
            Ok(stdout) => stdout,
            Err(error) => panic!("{error}\n{}", self.tails()),
        }
    }

    async fn try_rabbitmqctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = tokio::process::Command::new(script("rabbitmqctl"));
        self.environment(&mut command);
        command
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_DEADLINE, command.output())
            .await
            .map_err(|_| {
                format!(
                    "rabbitmqctl -n {} {args:?}: over {CTL_DEADLINE:?}",
                    self.node
                )
            })?
            .map_err(|e| format!("rabbitmqctl -n {} {args:?}: cannot run: {e}", self.node))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl -n {} {args:?}: {}\nstdout: {}\nstderr: {}",
                self.node,
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The environment of both the server and `rabbitmqctl`: every path points into the
    /// node's directory. What the caller's environment says about RabbitMQ or Erlang is
    /// dropped, so a developer's own settings cannot point a test at another node.
    fn environment(&self, command: &mut tokio::process::Command) {
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("RABBITMQ_")
                || matches!(&*name_text, "ERL_FLAGS" | "ERL_AFLAGS" | "ERL_ZFLAGS")
            {
                command.env_remove(&name);
            }
        }
        let dir = &self.dir;
        command
            .current_dir(dir)
            // The cookie is read from $HOME: this node's (or its cluster's) own.
            .env("HOME", dir.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("ERL_CRASH_DUMP", dir.join("erl_crash.dump"));
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("beam.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("log").join(format!("{}.log", self.node))
    }

    fn console_file(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Starts `rabbitmq-server` and waits until the node accepts AMQP connections.
    async fn boot(&mut self) -> Result<(), BootFailure> {
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.console_file())
            .map_err(|e| self.failure(format!("opening its console file: {e}")))?;
        let console_err = console
            .try_clone()
            .map_err(|e| self.failure(format!("sharing its console file: {e}")))?;
        let dir = &self.dir;
        let mut command = tokio::process::Command::new(script("rabbitmq-server"));
        self.environment(&mut command);
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            // The default is the AMQP port + 20000, which may well be taken.
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            // Distribution on the loopback interface only, as the shared node's is.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_err);
        stop_with_parent(&mut command);
        let server = command
            .spawn()
            .map_err(|e| self.failure(format!("cannot run rabbitmq-server: {e}")))?;
        self.server = Some(server);
        self.stop_signalled = false;
        self.await_amqp().await
    }

    /// Waits until an AMQP handshake with the node succeeds; fails at once if the node's VM
    /// exits meanwhile, and after [`START_DEADLINE`] if it never does.
    async fn await_amqp(&mut self) -> Result<(), BootFailure> {
        let started = Instant::now();
        let url = self.url();
        loop {
            let attempt = tokio::time::timeout(
                PROBE_TIMEOUT,
                Connection::connect(&url, ConnectionProperties::default()),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(connection)) => {
                    let _ = connection.close(200, "ready".into()).await;
                    return Ok(());
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no handshake within {PROBE_TIMEOUT:?}"),
            };
            let exited = match self.server.as_mut() {
                Some(server) => server.try_wait().ok().flatten(),
                None => return Err(self.failure("is not running".to_owned())),
            };
            if let Some(status) = exited {
                self.server = None;
                return Err(self.failure(format!(
                    "exited ({status}) before accepting AMQP connections"
                )));
            }
            if started.elapsed() > START_DEADLINE {
                return Err(self.failure(format!(
                    "accepts no AMQP connection after {START_DEADLINE:?}; last: {last_error}"
                )));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Waits for the VM (and the script around it) to exit after `stop` or a kill.
    async fn await_exit(&mut self, how: &str) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        match tokio::time::timeout(STOP_DEADLINE, server.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => panic!("{}: waiting for it to exit: {error}", self.node),
            Err(_) => {
                self.server = Some(server);
                panic!(
                    "{}: {how}, but still running after {STOP_DEADLINE:?}\n{}",
                    self.node,
                    self.tails()
                );
            }
        }
        // A pid file left by a killed VM would name a pid that may be reused.
        let _ = fs::remove_file(self.pid_file());
    }

    fn failure(&self, why: String) -> BootFailure {
        let tails = self.tails();
        BootFailure {
            ports_taken: tails.contains("eaddrinuse") || tails.contains("dist_port_already_used"),
            report: format!(
                "private RabbitMQ node {} (AMQP {}, distribution {}) {why}\n{tails}",
                self.node, self.port, self.dist_port
            ),
        }
    }

    /// For failure messages: the first errors the node printed (the cause, usually: what
    /// follows is crash reports) and the end of its console output and of its log.
    fn tails(&self) -> String {
        format!(
            "--- first errors in {console} ---\n{}\n--- end of {console} ---\n{}\n\
             --- end of {} ---\n{}",
            first_errors(&self.console_file()),
            tail(&self.console_file()),
            self.log_file().display(),
            tail(&self.log_file()),
            console = self.console_file().display(),
        )
    }

    /// Asks the VM to stop (SIGTERM to the script, which passes it on and waits for the VM):
    /// the first half of dropping, so the nodes of a cluster stop at the same time.
    fn signal_stop(&mut self) {
        if self.stop_signalled {
            return;
        }
        if let Some(pid) = self.server.as_ref().and_then(|server| server.id()) {
            signal(pid, libc::SIGTERM);
            self.stop_signalled = true;
        }
    }

    /// Waits (blocking: this is for `Drop`) for the script to exit after [`Self::signal_stop`];
    /// kills the VM and the script if they take longer than [`STOP_DEADLINE`].
    fn reap(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if !matches!(server.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{}: did not stop within {STOP_DEADLINE:?}; killing it",
            self.node
        );
        if let Some(pid) = fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
        {
            signal(pid, libc::SIGKILL);
        }
        let _ = server.start_kill();
        let killed = Instant::now();
        while killed.elapsed() < Duration::from_secs(5) {
            if !matches!(server.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.signal_stop();
        self.reap();
        if std::env::var_os(KEEP_DIRS_VAR).is_some() {
            eprintln!("{}: kept {}", self.node, self.dir.display());
        } else if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("{}: removing {}: {error}", self.node, self.dir.display());
        }
    }
}

/// Private RabbitMQ nodes joined in one cluster (sharing an Erlang cookie of their own).
pub struct PrivateCluster {
    nodes: Vec<PrivateBroker>,
}

impl PrivateCluster {
    /// Boots `size` nodes (named `herald-<tag>-n<i>-<random>@localhost`, i from 1) at once,
    /// joins every other one to the first, and checks that the first sees them all running.
    pub async fn start(tag: &str, size: usize) -> PrivateCluster {
        assert!(size >= 1, "a cluster of {size} nodes");
        let cookie = new_cookie();
        let booting = (1..=size).map(|i| {
            let tag = format!("{tag}-n{i}");
            let cookie = cookie.clone();
            async move { PrivateBroker::start_with_cookie(&tag, &cookie).await }
        });
        let mut cluster = PrivateCluster {
            nodes: futures_util::future::join_all(booting).await,
        };
        let first = cluster.nodes[0].node.clone();
        // No `reset` between stop_app and join_cluster: join_cluster resets the node itself
        // (and a fresh node has nothing to reset), so that is one Erlang VM boot less.
        for node in &mut cluster.nodes[1..] {
            node.rabbitmqctl(&["stop_app"]).await;
            node.rabbitmqctl(&["join_cluster", &first]).await;
            node.start_app().await;
        }
        let status = cluster.nodes[0]
            .rabbitmqctl(&["cluster_status", "--formatter", "json"])
            .await;
        let status: Value = serde_json::from_str(&status)
            .unwrap_or_else(|e| panic!("cluster_status of {first}: {e}: {status}"));
        let running = status["running_nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for node in &cluster.nodes {
            assert!(
                running.iter().any(|name| name == node.node_name()),
                "{} is not running in the cluster of {first}: {status}",
                node.node_name()
            );
        }
        cluster
    }

    /// Node `i`, counting from 0 (node 0 is the one the others joined).
    pub fn node(&self, i: usize) -> &PrivateBroker {
        &self.nodes[i]
    }

    /// Node `i`, to stop, kill or restart it.
    pub fn node_mut(&mut self, i: usize) -> &mut PrivateBroker {
        &mut self.nodes[i]
    }

    /// Every node, in order.
    pub fn nodes(&self) -> &[PrivateBroker] {
        &self.nodes
    }

    /// Every node's AMQP URL, in order (say, for herald's list of broker endpoints).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateBroker::url).collect()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // Every node is asked to stop before any is waited for, so they stop together; then
        // each node's own drop waits for it and removes its directory.
        for node in &mut self.nodes {
            node.signal_stop();
        }
    }
}

/// Where RabbitMQ's scripts are. Debian's /usr/sbin/rabbitmq-server and rabbitmqctl are
/// wrappers that, run by root, re-run the real script as the `rabbitmq` user through `su`:
/// with that user's HOME (so the shared node's cookie) and no right to write our directories.
/// The real scripts are in /usr/lib/rabbitmq/bin there; elsewhere (a generic Unix tarball,
/// Homebrew) the commands on PATH are the scripts themselves. HERALD_RABBITMQ_SBIN overrides.
fn script(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("HERALD_RABBITMQ_SBIN") {
        return PathBuf::from(dir).join(name);
    }
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// Two distinct ports free on every address right now.
fn free_port_pair() -> (u16, u16) {
    // Below the kernel's ephemeral range (32768 and up on Linux): ports picked there are soon
    // taken again as the local ports of outgoing connections (a load generator holds tens of
    // thousands), and RabbitMQ refuses a distribution port bound on any address. Each port is
    // checked free on every address (0.0.0.0), as RabbitMQ checks it.
    let free = |port: u16| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok();
    let pick = || loop {
        let port = rand::random_range(12_000..32_000u16);
        if free(port) {
            return port;
        }
    };
    let amqp = pick();
    let dist = loop {
        let port = pick();
        if port != amqp {
            break port;
        }
    };
    (amqp, dist)
}

/// A fresh Erlang cookie (an atom: upper-case letters are safe anywhere).
fn new_cookie() -> String {
    (0..32)
        .map(|_| char::from(b'A' + rand::random_range(0..26u8)))
        .collect()
}

/// The first [`FIRST_ERRORS`] lines of a file that RabbitMQ logged as errors.
fn first_errors(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains("[error]"))
            .take(FIRST_ERRORS)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => format!("({error})"),
    }
}

/// The last [`TAIL_BYTES`] of a file, or why there are none.
pub(crate) fn tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = fs::File::open(path)?;
        let length = file.metadata()?.len();
        file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("({e})"))
}

/// Has the kernel send SIGTERM to the server script when the test process dies without
/// dropping its nodes (killed by a CI timeout, say): the script passes it on to the VM, so no
/// node outlives its test run. Strictly it fires when the spawning *thread* exits; nodes are
/// spawned from the test's own thread (actix's runtime runs on it), which outlives them.
#[cfg(target_os = "linux")]
pub(crate) fn stop_with_parent(command: &mut tokio::process::Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (prctl, getppid), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the request was made.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn stop_with_parent(_command: &mut tokio::process::Command) {}

/// Sends `signal` to process `pid`; a process already gone is not an error here.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

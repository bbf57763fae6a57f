//! One TCP address forwarded by `socat` to a PostgreSQL server and moved to another on demand:
//! what a virtual IP, HAProxy or a pooler in front of a cluster does. herald on it cannot see a
//! failover, only a restart.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::private_postgres::free_port;

/// How long socat may take to listen or to go.
const DEADLINE: Duration = Duration::from_secs(60);

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
            let _ = tokio::time::timeout(DEADLINE, socat.wait()).await;
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
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(started.elapsed() < DEADLINE, "socat does not listen");
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
        while matches!(socat.try_wait(), Ok(None)) && started.elapsed() < DEADLINE {
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

//! Logging set-up: `RUST_LOG` as env_logger reads it (default `info`), with a ceiling on the
//! few library modules that would print secrets at their most verbose levels: lapin traces
//! every AMQP frame (the login frame carries the broker password), amq-protocol traces the
//! connection URI, tokio-postgres logs query parameters (password hashes) at debug, and
//! actix's access logger echoes error details (which may quote request values) at debug.
//!
//! lapin is also silenced altogether unless `RUST_LOG` names it: herald reports every broker
//! failure itself, in one line, and lapin's own three lines per failed attempt (plus the
//! `tracing::span` lines its spans turn into) only repeat it.

use log::{LevelFilter, Log, Metadata, Record};

/// Target prefixes whose records above the given level are dropped, whatever `RUST_LOG` says.
const CEILINGS: &[(&str, LevelFilter)] = &[
    ("lapin", LevelFilter::Debug),
    ("amq_protocol", LevelFilter::Debug),
    ("tokio_postgres", LevelFilter::Info),
    // At debug, actix's access logger echoes error details, which may quote request values.
    ("actix_web::middleware::logger", LevelFilter::Info),
];

/// Silenced unless `RUST_LOG` names them (see the module comment).
const QUIET_UNLESS_NAMED: &[&str] = &["lapin", "amq_protocol", "tracing::span"];

struct Capped {
    inner: env_logger::Logger,
    /// Entries of `QUIET_UNLESS_NAMED` that `RUST_LOG` did name.
    named: Vec<&'static str>,
}

impl Capped {
    fn allowed(&self, metadata: &Metadata) -> bool {
        let target = metadata.target();
        let quiet = QUIET_UNLESS_NAMED
            .iter()
            .any(|prefix| target.starts_with(prefix) && !self.named.contains(prefix));
        !quiet && under_ceiling(metadata)
    }
}

fn under_ceiling(metadata: &Metadata) -> bool {
    let target = metadata.target();
    CEILINGS
        .iter()
        .all(|(prefix, ceiling)| !target.starts_with(prefix) || metadata.level() <= *ceiling)
}

impl Log for Capped {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.allowed(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if self.allowed(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger. Call once, first thing in `main`.
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level = inner.filter();
    let named = QUIET_UNLESS_NAMED
        .iter()
        .copied()
        .filter(|prefix| spec.contains(prefix))
        .collect();
    if log::set_boxed_logger(Box::new(Capped { inner, named })).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use log::{Level, MetadataBuilder};

    fn allowed(target: &str, level: Level) -> bool {
        super::under_ceiling(&MetadataBuilder::new().target(target).level(level).build())
    }

    fn shown(named: Vec<&'static str>, target: &str, level: Level) -> bool {
        let capped = super::Capped {
            inner: env_logger::Builder::new().build(),
            named,
        };
        capped.allowed(&MetadataBuilder::new().target(target).level(level).build())
    }

    #[test]
    fn lapin_is_quiet_unless_named() {
        assert!(!shown(vec![], "lapin::channels", Level::Error));
        assert!(!shown(vec![], "tracing::span", Level::Info));
        assert!(shown(vec!["lapin"], "lapin::channels", Level::Error));
        assert!(!shown(vec!["lapin"], "lapin::io_loop", Level::Trace));
        assert!(shown(vec![], "herald::retry", Level::Warn));
    }

    #[test]
    fn secret_bearing_modules_are_capped() {
        assert!(!allowed("lapin::io_loop", Level::Trace));
        assert!(allowed("lapin::io_loop", Level::Debug));
        assert!(!allowed("amq_protocol_tcp", Level::Trace));
        assert!(!allowed("tokio_postgres::query", Level::Debug));
        assert!(allowed("tokio_postgres::connection", Level::Info));
        assert!(allowed("herald::startup", Level::Trace));
    }
}

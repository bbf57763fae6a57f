//! Logging set-up: `RUST_LOG` as env_logger reads it (default `info`), with a ceiling on the
//! few library modules that would print secrets at their most verbose levels: lapin traces
//! every AMQP frame (the login frame carries the broker password), amq-protocol traces the
//! connection URI, tokio-postgres logs query parameters (password hashes) at debug, and
//! actix's access logger echoes error details (which may quote request values) at debug.
//!
//! lapin is also silenced altogether unless `RUST_LOG` names it: herald reports every broker
//! failure itself, in one line, and lapin's own three lines per failed attempt (plus the
//! `tracing::span` lines its spans turn into) only repeat it. And a malformed request from a
//! client is not an error of the server's: actix-http's ERROR line for it is demoted to debug.

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Target prefixes whose records above the given level are dropped, whatever `RUST_LOG` says.
const CEILINGS: &[(&str, LevelFilter)] = &[
    ("lapin", LevelFilter::Debug),
    ("amq_protocol", LevelFilter::Debug),
    ("tokio_postgres", LevelFilter::Info),
    // At debug, actix's access logger echoes error details, which may quote request values.
    ("actix_web::middleware::logger", LevelFilter::Info),
];

/// Records that say a client sent a malformed request, at the level they are logged at instead
/// of the library's: actix-http logs every unparsable request head at ERROR, so anyone could
/// fill the log (and page whoever watches errors) with a loop of garbage. What was sent costs
/// the client a 400 or 431; the log keeps it at debug.
const DEMOTED: &[(&str, &str, Level)] = &[(
    "actix_http::h1::dispatcher",
    "stream error: request parse error",
    Level::Debug,
)];

/// The level `record` is logged at: its own, unless it is one of [`DEMOTED`].
fn level_of(record: &Record) -> Level {
    let level = record.level();
    for (target, prefix, demoted) in DEMOTED {
        if record.target().starts_with(target) && level < *demoted {
            // Formatting only records of these targets above the demoted level: rare.
            if record.args().to_string().starts_with(prefix) {
                return *demoted;
            }
        }
    }
    level
}

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
        if !self.allowed(record.metadata()) {
            return;
        }
        let level = level_of(record);
        if level == record.level() {
            self.inner.log(record);
            return;
        }
        let demoted = Record::builder()
            .args(*record.args())
            .level(level)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if self.inner.enabled(demoted.metadata()) {
            self.inner.log(&demoted);
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
    fn malformed_requests_are_demoted_from_error() {
        let record = |target: &'static str, text: std::fmt::Arguments<'static>| {
            super::level_of(
                &log::Record::builder()
                    .level(Level::Error)
                    .target(target)
                    .args(text)
                    .build(),
            )
        };
        assert_eq!(
            record(
                "actix_http::h1::dispatcher",
                format_args!("stream error: request parse error: invalid Header provided")
            ),
            Level::Debug
        );
        assert_eq!(
            record(
                "actix_http::h1::dispatcher",
                format_args!("stream error: io")
            ),
            Level::Error
        );
        assert_eq!(
            record(
                "herald::startup",
                format_args!("stream error: request parse error")
            ),
            Level::Error
        );
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

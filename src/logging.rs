//! Logging set-up: `RUST_LOG` as env_logger reads it (default `info`), with a ceiling on the
//! few library modules that would print secrets at their most verbose levels: lapin traces
//! every AMQP frame (the login frame carries the broker password), amq-protocol traces the
//! connection URI, tokio-postgres logs query parameters (password hashes) at debug, and
//! actix's access logger echoes error details (which may quote request values) at debug.

use log::{Level, Log, Metadata, Record};

/// Target prefixes whose records above the given level are dropped, whatever `RUST_LOG` says.
const CEILINGS: &[(&str, Level)] = &[
    ("lapin", Level::Debug),
    ("amq_protocol", Level::Debug),
    ("tokio_postgres", Level::Info),
    // At debug, actix's access logger echoes error details, which may quote request values.
    ("actix_web::middleware::logger", Level::Info),
];

struct Capped(env_logger::Logger);

fn allowed(metadata: &Metadata) -> bool {
    let target = metadata.target();
    CEILINGS
        .iter()
        .all(|(prefix, ceiling)| !target.starts_with(prefix) || metadata.level() <= *ceiling)
}

impl Log for Capped {
    fn enabled(&self, metadata: &Metadata) -> bool {
        allowed(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if allowed(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Installs the logger. Call once, first thing in `main`.
pub fn init() {
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level = logger.filter();
    if log::set_boxed_logger(Box::new(Capped(logger))).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use log::{Level, MetadataBuilder};

    fn allowed(target: &str, level: Level) -> bool {
        super::allowed(&MetadataBuilder::new().target(target).level(level).build())
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

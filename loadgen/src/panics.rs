//! Panics are bugs. One on the main thread ends the run (`main` turns it into an error exit with
//! its message); one on a client thread or in a spawned task would otherwise print its message
//! and let the run carry on short of some sessions or posts, so the hook also records it, and the
//! run then fails its checks naming it.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNT: AtomicU64 = AtomicU64::new(0);
static FIRST: OnceLock<String> = OnceLock::new();

/// Installs the recording hook in front of the default one (which still prints the message).
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        let location = info
            .location()
            .map_or_else(String::new, |at| format!(" at {at}"));
        COUNT.fetch_add(1, Ordering::Relaxed);
        let _ = FIRST.set(format!(
            "thread '{}' panicked{location}: {}",
            thread.name().unwrap_or("unnamed"),
            message(info.payload())
        ));
    }));
}

/// How many panics happened so far, and the first one's description.
pub fn seen() -> Option<(u64, String)> {
    let count = COUNT.load(Ordering::Relaxed);
    (count > 0).then(|| (count, FIRST.get().cloned().unwrap_or_default()))
}

/// The message a panic payload carries.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn a_panic_payload_reads_as_its_message() {
        assert_eq!(message(&"static text"), "static text");
        assert_eq!(message(&String::from("formatted 42")), "formatted 42");
        assert_eq!(message(&42u8), "(a panic without a message)");
    }
}

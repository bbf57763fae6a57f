//! The leader's connection string: TCP keepalives, so that PostgreSQL frees the relay's lock
//! soon after the leader's host freezes or drops off the network.

/// TCP keepalives on the leader's connection: if the leader's host freezes or drops off the
/// network, PostgreSQL frees the lock within about half a minute, not the default two hours.
pub const LEADER_KEEPALIVES: &str =
    "keepalives=1&keepalives_idle=10&keepalives_interval=5&keepalives_retries=3";

/// `url` with TCP keepalives for the leader's connection (unless it sets its own).
pub fn with_keepalives(url: &str) -> String {
    if url.contains("keepalives") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{LEADER_KEEPALIVES}")
}

#[cfg(test)]
mod tests {
    use super::with_keepalives;

    #[test]
    fn the_leaders_connection_gets_keepalives_unless_the_url_sets_them() {
        assert_eq!(
            with_keepalives("postgres://h/db"),
            format!("postgres://h/db?{}", super::LEADER_KEEPALIVES)
        );
        assert!(with_keepalives("postgres://h/db?sslmode=disable").contains("disable&keepalives=1"));
        let own = "postgres://h/db?keepalives_idle=60";
        assert_eq!(with_keepalives(own), own);
    }
}

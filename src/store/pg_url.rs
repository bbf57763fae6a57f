//! `database.url` as libpq writes it, several hosts included
//! (`postgres://u@db-a:5432,db-b:5432/herald?target_session_attrs=read-write`), read without
//! anything else of the store, so the settings can check it at load. The `url` crate cannot
//! parse a host list, so the few parts herald needs (the hosts, the database name) are cut out
//! of the text here; tokio-postgres, which connects, reads the whole URL itself.

/// The parts of a PostgreSQL URL herald looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrl<'a> {
    /// `postgres://` or `postgresql://`.
    scheme: &'a str,
    /// `user[:password]@`, if any (with its `@`).
    user: &'a str,
    /// The host list, as written: `a:5432,b:5433`.
    hosts: &'a str,
    /// The database name as written (percent-encoded), empty if none.
    database: &'a str,
    /// `?…` and `#…`, if any.
    rest: &'a str,
}

impl<'a> PgUrl<'a> {
    /// Cuts `url` into its parts. The message of an error never quotes the URL (it may hold a
    /// password).
    pub fn parse(url: &'a str) -> Result<PgUrl<'a>, String> {
        let url = url.trim();
        let scheme_end = url
            .find("://")
            .ok_or_else(|| "is not a URL: no scheme://".to_owned())?;
        let scheme = &url[..scheme_end + 3];
        if !matches!(&url[..scheme_end], "postgres" | "postgresql") {
            return Err("must start with postgres:// or postgresql://".into());
        }
        let after_scheme = &url[scheme_end + 3..];
        let authority_end = after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_end];
        // The user information ends at the last '@' (a password may hold one, unescaped).
        let (user, hosts) = match authority.rfind('@') {
            Some(at) => (&authority[..=at], &authority[at + 1..]),
            None => ("", authority),
        };
        let tail = &after_scheme[authority_end..];
        let (database, rest) = match tail.strip_prefix('/') {
            Some(path) => {
                let end = path.find(['?', '#']).unwrap_or(path.len());
                (&path[..end], &path[end..])
            }
            None => ("", tail),
        };
        let parsed = PgUrl {
            scheme,
            user,
            hosts,
            database,
            rest,
        };
        if parsed.host_list().any(|(host, _)| host.is_empty()) {
            return Err("has no host (or an empty one in its host list)".into());
        }
        Ok(parsed)
    }

    /// Each host with its port (as written, possibly empty), in order.
    pub fn host_list(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.hosts.split(',').map(|host| {
            // `[::1]:5432`: the port follows the bracket.
            let split = match host.rfind(']') {
                Some(bracket) => host[bracket..].find(':').map(|at| bracket + at),
                None => host.rfind(':'),
            };
            match split {
                Some(colon) => (&host[..colon], &host[colon + 1..]),
                None => (host, ""),
            }
        })
    }

    /// Whether the URL names more than one host.
    pub fn has_several_hosts(&self) -> bool {
        self.hosts.contains(',')
    }

    /// The database name, decoded; empty if the URL names none.
    pub fn database(&self) -> String {
        url::form_urlencoded::parse(format!("n={}", self.database).as_bytes())
            .next()
            .map(|(_, name)| name.into_owned())
            .unwrap_or_else(|| self.database.to_owned())
    }

    /// The same URL naming another database (`name` as written, already encoded).
    pub fn with_database(&self, name: &str) -> String {
        format!(
            "{}{}{}/{name}{}",
            self.scheme, self.user, self.hosts, self.rest
        )
    }

    /// Whether the query sets `key`.
    pub fn sets(&self, key: &str) -> bool {
        let query = self.rest.strip_prefix('?').unwrap_or("");
        let query = query.split('#').next().unwrap_or("");
        url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == key)
    }
}

#[cfg(test)]
mod tests {
    use super::PgUrl;

    #[test]
    fn one_host_and_several_are_read() {
        let one = PgUrl::parse("postgres://u:p@h:5432/herald_x?sslmode=disable").expect("ok");
        assert_eq!(one.host_list().collect::<Vec<_>>(), [("h", "5432")]);
        assert!(!one.has_several_hosts());
        assert_eq!(one.database(), "herald_x");
        assert_eq!(
            one.with_database("postgres"),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        let many = PgUrl::parse(
            "postgresql://u:p@ss@db-a:5432,db-b,[::1]:6000/my%20db?target_session_attrs=read-write",
        )
        .expect("ok");
        assert_eq!(
            many.host_list().collect::<Vec<_>>(),
            [("db-a", "5432"), ("db-b", ""), ("[::1]", "6000")]
        );
        assert!(many.has_several_hosts());
        assert_eq!(many.database(), "my db");
        assert!(many.sets("target_session_attrs"));
        assert!(!many.sets("connect_timeout"));
        assert_eq!(
            many.with_database("postgres"),
            "postgresql://u:p@ss@db-a:5432,db-b,[::1]:6000/postgres?target_session_attrs=read-write"
        );
    }

    #[test]
    fn what_is_not_a_postgres_url_is_refused_without_quoting_it() {
        for bad in [
            "not a url",
            "amqp://h/db",
            "postgres:///db",
            "postgres://a,,b/db",
            "postgres://u:secret@/db",
        ] {
            let error = PgUrl::parse(bad).expect_err(bad);
            assert!(!error.contains("secret"), "{error}");
        }
        assert_eq!(PgUrl::parse("postgres://h").expect("ok").database(), "");
    }
}

//! Seeding: the follower graph a run uses (generated here, kept in memory to know who must
//! receive each post) and its bulk insertion into herald's database — users, friendships, login
//! tokens, follower counts and celebrity marks — in a few large `unnest` statements rather
//! than one HTTP call or one row per user.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use diesel::sql_types::{Array, BigInt, Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use indicatif::ProgressBar;
use rand::rngs::StdRng;
use rand::seq::index;
use uuid::Uuid;

/// Rows per statement: large enough to amortize round trips, small enough to keep each
/// statement's arrays a few hundred KiB.
const CHUNK: usize = 10_000;

/// Every seeded user shares this password; nobody logs in with it (tokens are inserted directly),
/// but the column needs a real argon2id hash.
const PASSWORD: &str = "herald-loadgen-password";

/// Who exists and who follows whom, by user index (`users[i]` is user `i`'s id).
pub struct Graph {
    pub users: Vec<Uuid>,
    /// The extra, much-followed author, if one was asked for (always the last user).
    pub celebrity: Option<u32>,
    /// `follows[u]`: the authors user `u` follows, ascending.
    follows: Vec<Vec<u32>>,
}

impl Graph {
    /// `users` ordinary users, each following `follows` distinct random others, plus, when
    /// `celebrity_followers` > 0, one extra author followed by the first that many users.
    pub fn generate(
        users: u32,
        follows: u32,
        celebrity_followers: u32,
        rng: &mut StdRng,
    ) -> Result<Graph> {
        if users == 0 {
            bail!("--users must be at least 1");
        }
        if follows >= users {
            bail!("--follows {follows} needs at least {} users", follows + 1);
        }
        if celebrity_followers > users {
            bail!("--celebrity-followers {celebrity_followers} exceeds --users {users}");
        }
        let celebrity = (celebrity_followers > 0).then_some(users);
        let total = users + u32::from(celebrity.is_some());
        let mut graph = Graph {
            users: (0..total).map(|_| Uuid::new_v4()).collect(),
            celebrity,
            follows: Vec::with_capacity(total as usize),
        };
        for user in 0..users {
            // Sample among the other users: indices at or past `user` shift up by one.
            let mut authors: Vec<u32> = index::sample(rng, (users - 1) as usize, follows as usize)
                .into_iter()
                .map(|i| {
                    let i = i as u32;
                    if i >= user {
                        i + 1
                    } else {
                        i
                    }
                })
                .collect();
            if let Some(star) = celebrity.filter(|_| user < celebrity_followers) {
                authors.push(star);
            }
            authors.sort_unstable();
            graph.follows.push(authors);
        }
        if celebrity.is_some() {
            graph.follows.push(Vec::new());
        }
        Ok(graph)
    }

    pub fn len(&self) -> u32 {
        self.users.len() as u32
    }

    /// Whether `user` follows `author`.
    pub fn follows(&self, user: u32, author: u32) -> bool {
        self.follows
            .get(user as usize)
            .is_some_and(|authors| authors.binary_search(&author).is_ok())
    }

    /// The authors `user` follows.
    pub fn followed_by(&self, user: u32) -> &[u32] {
        self.follows
            .get(user as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn edge_count(&self) -> usize {
        self.follows.iter().map(Vec::len).sum()
    }
}

/// What seeding produced: the plaintext token of every user that got one.
pub struct Seeded {
    pub tokens: Vec<Option<String>>,
    pub celebrities_marked: u64,
    pub seconds: f64,
}

/// Inserts `graph` into the database at `database_url`, with a login token for each user whose
/// `needs_token` entry is true, then sets follower counts and celebrity marks.
pub async fn seed(
    database_url: &str,
    graph: &Graph,
    needs_token: &[bool],
    celebrity_threshold: u32,
    progress: &ProgressBar,
) -> Result<Seeded> {
    let started = Instant::now();
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .with_context(|| format!("connecting to {}", redact(database_url)))?;
    // Seeding is rebuilt from scratch on every run; durability of each commit buys nothing.
    diesel::sql_query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await
        .context("SET synchronous_commit")?;

    // One hash for everyone: argon2 is slow on purpose, and is not what a run measures.
    let password_hash = actix_rt::task::spawn_blocking(|| herald::auth::password::hash(PASSWORD))
        .await
        .context("the hashing thread")?
        .context("hashing the shared password")?;

    let tokens: Vec<Option<String>> = needs_token
        .iter()
        .map(|&needed| needed.then(herald::auth::token::generate))
        .collect();
    let token_rows = tokens.iter().flatten().count();
    progress.set_length((graph.users.len() + graph.edge_count() + token_rows) as u64);

    for (chunk_index, chunk) in graph.users.chunks(CHUNK).enumerate() {
        diesel::sql_query(
            "INSERT INTO users (id, first_name, second_name, birthdate, biography, city, password_hash) \
             SELECT t.id, 'Load', 'User' || ($3 + t.ord), DATE '1990-01-01', '', 'Loadville', $2 \
             FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, ord)",
        )
        .bind::<Array<SqlUuid>, _>(chunk.to_vec())
        .bind::<Text, _>(&password_hash)
        .bind::<BigInt, _>((chunk_index * CHUNK) as i64)
        .execute(&mut conn)
        .await
        .context("inserting users")?;
        progress.inc(chunk.len() as u64);
    }

    for (followers, authors) in chunked_edges(graph) {
        let rows = followers.len() as u64;
        diesel::sql_query(
            "INSERT INTO friendships (user_id, friend_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])",
        )
        .bind::<Array<SqlUuid>, _>(followers)
        .bind::<Array<SqlUuid>, _>(authors)
        .execute(&mut conn)
        .await
        .context("inserting friendships")?;
        progress.inc(rows);
    }

    let token_pairs: Vec<(Vec<u8>, Uuid)> = tokens
        .iter()
        .enumerate()
        .filter_map(|(user, token)| {
            token
                .as_deref()
                .map(|t| (herald::auth::token::digest(t), graph.users[user]))
        })
        .collect();
    for chunk in token_pairs.chunks(CHUNK) {
        let hashes: Vec<Vec<u8>> = chunk.iter().map(|(h, _)| h.clone()).collect();
        let owners: Vec<Uuid> = chunk.iter().map(|(_, u)| *u).collect();
        diesel::sql_query(
            "INSERT INTO login_tokens (token_hash, user_id, expires_at) \
             SELECT t.h, t.u, now() + interval '1 day' FROM unnest($1::bytea[], $2::uuid[]) AS t(h, u)",
        )
        .bind::<Array<Bytea>, _>(hashes)
        .bind::<Array<SqlUuid>, _>(owners)
        .execute(&mut conn)
        .await
        .context("inserting login tokens")?;
        progress.inc(chunk.len() as u64);
    }

    // Rows inserted behind herald's back: their counts and celebrity marks are the store's to
    // set. Only this run's users are touched, and none of them is online yet, so no switch to
    // celebrity has to happen during the run.
    herald::store::friends::recount_followers(&mut conn, &graph.users)
        .await
        .context("setting follower counts")?;
    let celebrities_marked = herald::store::celebrities::mark_offline_among(
        &mut conn,
        &graph.users,
        i64::from(celebrity_threshold),
    )
    .await
    .context("marking celebrities")? as u64;
    // Fresh statistics, so the fan-out's follower query plans as it would on a warm database.
    diesel::sql_query("ANALYZE users, friendships, login_tokens")
        .execute(&mut conn)
        .await
        .context("ANALYZE")?;

    Ok(Seeded {
        tokens,
        celebrities_marked,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The graph's edges as (followers, authors) id arrays of at most `CHUNK` rows each.
fn chunked_edges(graph: &Graph) -> Vec<(Vec<Uuid>, Vec<Uuid>)> {
    let mut chunks = Vec::new();
    let mut followers = Vec::with_capacity(CHUNK);
    let mut authors = Vec::with_capacity(CHUNK);
    for user in 0..graph.len() {
        for &author in graph.followed_by(user) {
            followers.push(graph.users[user as usize]);
            authors.push(graph.users[author as usize]);
            if followers.len() == CHUNK {
                chunks.push((std::mem::take(&mut followers), std::mem::take(&mut authors)));
            }
        }
    }
    if !followers.is_empty() {
        chunks.push((followers, authors));
    }
    chunks
}

/// A database URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::Graph;

    #[test]
    fn every_user_follows_distinct_others_and_the_first_fans_follow_the_celebrity() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let graph = Graph::generate(50, 10, 20, &mut rng).expect("graph");
        let star = graph.celebrity.expect("celebrity");
        assert_eq!(star, 50);
        assert_eq!(graph.len(), 51);
        for user in 0..50 {
            let authors = graph.followed_by(user);
            assert!(!authors.contains(&user), "user {user} follows itself");
            assert!(authors.windows(2).all(|w| w[0] < w[1]), "duplicates");
            assert_eq!(authors.len(), 10 + usize::from(user < 20));
            assert_eq!(graph.follows(user, star), user < 20);
        }
        assert_eq!(graph.edge_count(), 50 * 10 + 20);
        assert!(Graph::generate(5, 5, 0, &mut rng).is_err());
    }
}

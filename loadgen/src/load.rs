//! The load phase: writing posts through herald's HTTP API on a schedule — a steady rate
//! from random authors, or a burst from one author — over a few keep-alive clients, recording
//! when each request was sent (where the latency clock starts) and whether it succeeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use crate::sessions::POST_TEXT_PREFIX;

/// Request timeout for one post.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive connections one posting client may open: bounded, because every socket is a
/// descriptor and the sessions need nearly all of them.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// Error messages kept for the report (the count of failures is always complete).
const ERROR_SAMPLES: usize = 5;

/// When each post starts.
#[derive(Clone, Copy, Debug)]
pub enum Schedule {
    /// Open loop: post `n` starts at `n / rate` seconds, whatever the answers to earlier posts.
    Rate(f64),
    /// Open loop: post `n` starts at `n × interval`.
    Every(Duration),
    /// Closed loop: each post starts when the previous one has been answered.
    AfterPrevious,
}

pub struct Plan {
    /// Post `n` goes to `base_urls[n mod len]` (the instances of one deployment); not empty.
    pub base_urls: Vec<String>,
    /// The author (user index) of post `n` is `authors[n]`; `n` is the post's sequence number.
    pub authors: Vec<u32>,
    pub schedule: Schedule,
    pub http_clients: usize,
    pub concurrency: usize,
    /// Appended to every post's text, to tell runs apart in the database.
    pub tag: String,
}

#[derive(Clone, Copy)]
pub struct PostRecord {
    pub author: u32,
    /// When the request was sent: the start of every delivery's latency.
    pub sent: Instant,
    /// When its answer arrived: a post of the same author sent after this must be delivered
    /// after this one.
    pub answered: Instant,
    pub ok: bool,
}

pub struct Outcome {
    pub posts: Vec<PostRecord>,
    pub started: Instant,
    pub finished: Instant,
    pub failed: u64,
    pub error_samples: Vec<String>,
}

/// Writes every post of `plan`; `tokens[user]` must hold each author's token.
pub async fn run(plan: Plan, tokens: &[Option<String>], progress: &ProgressBar) -> Result<Outcome> {
    if plan.base_urls.is_empty() {
        bail!("no herald URL to post to");
    }
    let urls: Vec<String> = plan
        .base_urls
        .iter()
        .map(|base| format!("{}/post/create", base.trim_end_matches('/')))
        .collect();
    let concurrency = match plan.schedule {
        Schedule::AfterPrevious => 1,
        _ => plan.concurrency.max(1),
    };
    let clients: Vec<awc::Client> = (0..plan.http_clients.max(1))
        .map(|_| {
            awc::Client::builder()
                .connector(
                    awc::Connector::new()
                        .limit(concurrency.min(MAX_CONNECTIONS_PER_CLIENT))
                        .timeout(POST_TIMEOUT),
                )
                .timeout(POST_TIMEOUT)
                .finish()
        })
        .collect();
    let permits = Arc::new(Semaphore::new(concurrency));
    progress.set_length(plan.authors.len() as u64);

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.authors.len());
    for (seq, &author) in plan.authors.iter().enumerate() {
        let due = match plan.schedule {
            Schedule::Rate(rate) => Some(started + Duration::from_secs_f64(seq as f64 / rate)),
            Schedule::Every(interval) => Some(started + interval * seq as u32),
            Schedule::AfterPrevious => None,
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("post permits closed")?;
        let token = tokens
            .get(author as usize)
            .and_then(Option::clone)
            .ok_or_else(|| anyhow!("author {author} has no login token"))?;
        let client = clients[seq % clients.len()].clone();
        let (url, text, progress) = (
            urls[seq % urls.len()].clone(),
            format!("{POST_TEXT_PREFIX}{seq} {}", plan.tag),
            progress.clone(),
        );
        tasks.push(actix_rt::spawn(async move {
            let sent = Instant::now();
            let result = create_post(&client, &url, &token, &text).await;
            let answered = Instant::now();
            drop(permit);
            progress.inc(1);
            (sent, answered, result)
        }));
    }

    let mut posts = Vec::with_capacity(tasks.len());
    let mut failed = 0;
    let mut error_samples = Vec::new();
    for (seq, (task, &author)) in tasks.into_iter().zip(&plan.authors).enumerate() {
        // A task that died (a panic, printed above) counts as a failed post, not as the end of
        // the run: the posts that went through are still checked.
        let (sent, answered, result) = task.await.unwrap_or_else(|error| {
            let why = if error.is_panic() {
                crate::panics::message(&*error.into_panic())
            } else {
                error.to_string()
            };
            (
                started,
                started,
                Err(anyhow!("post #{seq}: its task died: {why}")),
            )
        });
        if let Err(error) = &result {
            failed += 1;
            if error_samples.len() < ERROR_SAMPLES {
                error_samples.push(format!("{error:#}"));
            }
        }
        posts.push(PostRecord {
            author,
            sent,
            answered,
            ok: result.is_ok(),
        });
    }
    Ok(Outcome {
        posts,
        started,
        finished: Instant::now(),
        failed,
        error_samples,
    })
}

/// `POST /post/create`; the answer is the new post's id as a bare JSON string.
async fn create_post(client: &awc::Client, url: &str, token: &str, text: &str) -> Result<()> {
    let mut response = client
        .post(url)
        .bearer_auth(token)
        .send_json(&serde_json::json!({ "text": text }))
        .await
        .map_err(|error| anyhow!("POST /post/create: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.body().await.unwrap_or_default();
        bail!(
            "POST /post/create: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let _id: String = response
        .json()
        .await
        .map_err(|error| anyhow!("POST /post/create answered an unexpected body: {error}"))?;
    Ok(())
}

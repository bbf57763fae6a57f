//! User shards (`realtime.user_shards`), with every author published once
//! (`celebrity_followers = 1`): per-user messages travel under `users.<n>`, a node binds the
//! shards of its sessions' users and no key per user, and the feed's promises hold: posts reach
//! exactly the followers, a follow or an unfollow takes effect at the very next post.

use herald::config::{QueueMode, Settings};
use herald::realtime::broker::shards;

use crate::support::{self, bound, TestApp};

const USER_SHARDS: u16 = 8;

fn sharded_settings() -> Settings {
    let mut settings = support::test_settings_in(QueueMode::Node);
    settings.realtime.user_shards = USER_SHARDS;
    settings.realtime.celebrity_followers = 1;
    settings
}

#[actix_web::test]
async fn user_shards_carry_posts_and_follows_without_a_binding_per_user() {
    let app = TestApp::spawn_with(sharded_settings()).await;
    let exchange = app.settings.realtime.exchange.clone();
    let author = app.user("Author").await;
    let reader = app.user("Reader").await;
    let stranger = app.user("Stranger").await;
    let later = app.user("Later").await;
    let barrier = app.user("Barrier").await;
    app.follow(&reader, &author).await;
    app.follow(&reader, &barrier).await;
    app.follow(&stranger, &barrier).await;
    let mut feed = app.feed(&reader).await;
    let mut other = app.feed(&stranger).await;
    app.relay_idle().await;

    // The reader's shard is bound, not its own key.
    let shard = shards::node_user_key(reader.id, USER_SHARDS);
    assert!(shard.starts_with(shards::USER_SHARD_PREFIX), "{shard}");
    assert_eq!(bound(&exchange, &shard).await, 1);
    assert_eq!(bound(&exchange, &format!("user.{}", reader.id)).await, 0);

    let post = app.create_post(&author, "hello").await;
    feed.expect_created(post, &author, "hello").await;

    // A follow takes effect at the very next post.
    app.follow(&reader, &later).await;
    let post = app.create_post(&later, "first").await;
    feed.expect_created(post, &later, "first").await;

    // An unfollow too: the author's next post does not reach the reader, the barrier's does.
    app.unfollow(&reader, &author).await;
    app.create_post(&author, "you left").await;
    let fence = app.create_post(&barrier, "fence").await;
    feed.expect_created(fence, &barrier, "fence").await;

    // The stranger, on the same node and maybe the same shard, got none of the others' posts.
    other.expect_created(fence, &barrier, "fence").await;
}

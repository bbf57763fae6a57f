use std::time::Duration;

use uuid::Uuid;

use super::{is_own_feed, Stomp, StompSettings, MAX_SUBSCRIPTIONS};
use crate::realtime::session::core::Out;
use crate::realtime::transport::framing::{Command, Framing};
use crate::realtime::transport::stomp::codec::Version;

fn stomp() -> Stomp {
    Stomp::new(StompSettings {
        max_frame: 4096,
        heartbeat: Duration::from_secs(10),
        exchange: "herald.feed".into(),
        versions: vec![Version::V10, Version::V11, Version::V12],
    })
}

fn commands(stomp: &mut Stomp, input: &str) -> Vec<Command> {
    stomp.read(input.as_bytes());
    std::iter::from_fn(|| stomp.next_command()).collect()
}

fn connected(user: Uuid) -> Stomp {
    let mut stomp = stomp();
    let asked = commands(
        &mut stomp,
        "CONNECT\naccept-version:1.2,1.1\nheart-beat:4000,4000\npasscode:tok\n\n\0",
    );
    assert_eq!(
        asked,
        vec![Command::Authenticate {
            token: Some("tok".into())
        }]
    );
    let replies = stomp.connected(user);
    assert!(
        replies[0].starts_with("CONNECTED\nversion:1.2\n"),
        "{replies:?}"
    );
    assert!(replies[0].contains("heart-beat:10000,10000\n"));
    stomp
}

fn is_error(command: &Command) -> bool {
    matches!(command, Command::Reply(text) if text.starts_with("ERROR\n"))
}

fn closes_with_error(asked: &[Command]) -> bool {
    asked.iter().any(is_error) && matches!(asked.last(), Some(Command::Close { .. }))
}

#[test]
fn connect_negotiates_the_highest_common_version_and_heart_beats() {
    let user = Uuid::new_v4();
    let mut stomp = connected(user);
    assert_eq!(stomp.silence_limit(), Some(Duration::from_secs(20)));
    assert_eq!(stomp.heartbeat().as_deref(), Some("\n"));

    let mut legacy = self::stomp();
    let asked = commands(&mut legacy, "CONNECT\nlogin:x\npasscode:tok\n\n\0");
    assert_eq!(asked.len(), 1);
    let replies = legacy.connected(user);
    assert!(
        replies[0].starts_with("CONNECTED\nversion:1.0\n"),
        "{replies:?}"
    );
    assert_eq!(legacy.heartbeat(), None);

    let mut none = self::stomp();
    assert!(closes_with_error(&commands(
        &mut none,
        "CONNECT\naccept-version:2.0\n\n\0"
    )));
}

#[test]
fn the_token_comes_from_authorization_token_or_passcode() {
    for (header, token) in [
        ("Authorization:Bearer abc", "abc"),
        ("token:def", "def"),
        ("passcode:ghi", "ghi"),
    ] {
        let mut stomp = stomp();
        let asked = commands(
            &mut stomp,
            &format!("STOMP\naccept-version:1.2\n{header}\n\n\0"),
        );
        assert_eq!(
            asked,
            vec![Command::Authenticate {
                token: Some(token.into())
            }]
        );
    }
}

#[test]
fn subscribing_to_the_own_feed_starts_it_and_messages_carry_seq() {
    let user = Uuid::new_v4();
    let mut stomp = connected(user);
    let asked = commands(
        &mut stomp,
        "SUBSCRIBE\nid:sub-0\ndestination:/user/queue/feed\nack:client\nsince:7\nreceipt:r1\n\n\0",
    );
    assert_eq!(asked[0], Command::Subscribe { since: Some(7) });
    assert!(matches!(&asked[1], Command::Reply(r) if r.starts_with("RECEIPT\nreceipt-id:r1\n")));
    let mut sent = Vec::new();
    stomp.frame(Out::Event(8, "{\"a\":1}"), &mut |text| {
        sent.push(text.to_owned())
    });
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("subscription:sub-0\n"));
    assert!(sent[0].contains("message-id:8\n"));
    assert!(sent[0].contains("ack:8\n"));
    assert!(sent[0].contains("content-length:7\n"));
    assert!(sent[0].ends_with("\n\n{\"a\":1}\0"));
    // ACK of what was sent is fine; of anything else, an error.
    assert!(commands(&mut stomp, "ACK\nid:8\n\n\0").is_empty());
    assert!(closes_with_error(&commands(&mut stomp, "ACK\nid:99\n\n\0")));
}

#[test]
fn another_users_destination_send_unknown_commands_and_excess_subscriptions_are_errors() {
    let user = Uuid::new_v4();
    let other = Uuid::new_v4();
    for frame in [
        format!("SUBSCRIBE\nid:1\ndestination:/topic/user.{other}\n\n\0"),
        "SUBSCRIBE\nid:1\ndestination:/queue/other\n\n\0".to_owned(),
        "SEND\ndestination:/queue/feed\n\nhi\0".to_owned(),
        "FLY\n\n\0".to_owned(),
        "garbage\0".to_owned(),
    ] {
        let mut stomp = connected(user);
        assert!(closes_with_error(&commands(&mut stomp, &frame)), "{frame}");
    }
    let mut stomp = connected(user);
    let many: String = (0..1000)
        .map(|n| format!("SUBSCRIBE\nid:{n}\ndestination:/queue/feed\n\n\0"))
        .collect();
    let asked = commands(&mut stomp, &many[..4000]);
    let subscribed = asked
        .iter()
        .filter(|c| matches!(c, Command::Subscribe { .. }))
        .count();
    assert_eq!(subscribed, MAX_SUBSCRIPTIONS);
    assert!(closes_with_error(&asked));
    // Nothing is read after the close.
    assert!(commands(&mut stomp, "DISCONNECT\n\n\0").is_empty());
}

#[test]
fn nothing_but_connect_is_read_first() {
    let mut stomp = stomp();
    assert!(closes_with_error(&commands(
        &mut stomp,
        "SUBSCRIBE\nid:1\ndestination:/queue/feed\n\n\0"
    )));
}

#[test]
fn destinations_name_the_users_own_feed() {
    let user = Uuid::new_v4();
    for good in [
        "/user/queue/feed".to_owned(),
        "/queue/feed".to_owned(),
        "/topic/feed".to_owned(),
        format!("/topic/{user}"),
        format!("/topic/user.{user}"),
        format!("/exchange/herald.feed/user.{user}"),
        format!("/exchange/herald.feed/{user}"),
    ] {
        assert!(is_own_feed(&good, user, "herald.feed"), "{good}");
    }
    for bad in [
        format!("/exchange/other/user.{user}"),
        format!("/topic/user.{}", Uuid::new_v4()),
        "/topic/".to_owned(),
        "/queue/feed2".to_owned(),
    ] {
        assert!(!is_own_feed(&bad, user, "herald.feed"), "{bad}");
    }
}

//! `--transport stomp`: the sessions read herald's feed as STOMP over a WebSocket (`/stomp`,
//! contract §4) instead of the JSON socket: the frames that open a session, and the JSON body
//! of each MESSAGE (what the JSON socket would have sent as the frame itself).

/// Whether `url` is herald's STOMP endpoint.
pub fn is_stomp(url: &str) -> bool {
    url.ends_with("/stomp")
}

/// CONNECT (token as `passcode`, no heart-beats: the WebSocket's pings keep it alive) and
/// SUBSCRIBE to the user's own feed, in one WebSocket message.
pub fn opening(token: &str) -> String {
    format!(
        "CONNECT\naccept-version:1.2\nheart-beat:0,0\npasscode:{token}\n\n\0\
         SUBSCRIBE\nid:0\ndestination:/user/queue/feed\n\n\0"
    )
}

/// The body of a MESSAGE frame; `None` for any other frame (CONNECTED, heart-beats).
pub fn message_body(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(b"MESSAGE\n")?;
    let start = rest.windows(2).position(|pair| pair == b"\n\n")? + 2;
    let body = &rest[start..];
    Some(body.strip_suffix(b"\0").unwrap_or(body))
}

#[cfg(test)]
mod tests {
    use super::{is_stomp, message_body};

    #[test]
    fn reads_a_message_body_and_skips_other_frames() {
        let frame = b"MESSAGE\ndestination:/user/queue/feed\nmessage-id:7\n\n{\"seq\":7}\0";
        assert_eq!(message_body(frame), Some(&b"{\"seq\":7}"[..]));
        assert_eq!(message_body(b"CONNECTED\nversion:1.2\n\n\0"), None);
        assert_eq!(message_body(b"\n"), None);
        assert!(is_stomp("ws://h:1/stomp"));
        assert!(!is_stomp("ws://h:1/post/feed/posted"));
    }
}

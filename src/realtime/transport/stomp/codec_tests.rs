use proptest::prelude::*;

use super::{encode, CodecError, Decoded, Decoder, Frame, Version};

fn decode_all(decoder: &mut Decoder) -> Result<Vec<Decoded>, CodecError> {
    let mut out = Vec::new();
    while let Some(item) = decoder.decode()? {
        out.push(item);
    }
    Ok(out)
}

fn frames_of(bytes: &[u8], version: Version) -> Result<Vec<Frame>, CodecError> {
    let mut decoder = Decoder::new(64 * 1024, 64);
    decoder.set_version(version);
    decoder.push(bytes)?;
    Ok(decode_all(&mut decoder)?
        .into_iter()
        .filter_map(|item| match item {
            Decoded::Frame(frame) => Some(frame),
            Decoded::HeartBeat => None,
        })
        .collect())
}

#[test]
fn reads_a_stompjs_7_connect_with_crlf_and_heartbeats_around_it() {
    let bytes =
        b"\n\r\nCONNECT\r\naccept-version:1.2,1.1,1.0\r\nheart-beat:10000,10000\r\n\r\n\0\n";
    let mut decoder = Decoder::new(1024, 8);
    decoder.push(bytes).expect("fits");
    let items = decode_all(&mut decoder).expect("well formed");
    assert_eq!(items.len(), 4, "{items:?}");
    assert_eq!(items[0], Decoded::HeartBeat);
    let Decoded::Frame(frame) = &items[2] else {
        panic!("a frame: {items:?}");
    };
    assert_eq!(frame.command, "CONNECT");
    assert_eq!(frame.header("accept-version"), Some("1.2,1.1,1.0"));
    assert_eq!(items[3], Decoded::HeartBeat);
}

#[test]
fn frames_split_anywhere_or_packed_together_read_the_same() {
    let one = encode(
        &Frame::new("SUBSCRIBE")
            .with("id", "sub-0")
            .with("destination", "/queue/feed"),
        Version::V12,
    );
    let two = format!("{one}\n{one}");
    for cut in 0..two.len() {
        let mut decoder = Decoder::new(1024, 8);
        decoder.push(&two.as_bytes()[..cut]).expect("fits");
        let mut items = decode_all(&mut decoder).expect("well formed");
        decoder.push(&two.as_bytes()[cut..]).expect("fits");
        items.extend(decode_all(&mut decoder).expect("well formed"));
        let frames = items
            .iter()
            .filter(|item| matches!(item, Decoded::Frame(_)))
            .count();
        assert_eq!(frames, 2, "cut at {cut}: {items:?}");
    }
}

#[test]
fn a_content_length_body_may_hold_nuls() {
    let frames = frames_of(b"SEND\ncontent-length:3\n\na\0b\0", Version::V12).expect("ok");
    assert_eq!(frames[0].body, b"a\0b");
    assert!(matches!(
        frames_of(b"SEND\ncontent-length:1\n\nab\0", Version::V12),
        Err(CodecError::Malformed(_))
    ));
    assert!(matches!(
        frames_of(b"SEND\ncontent-length:x\n\n\0", Version::V12),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn escapes_are_read_per_version_and_never_in_connect() {
    let raw = b"SUBSCRIBE\nid:a\\cb\\nc\\\\d\\re\\q\n\n\0";
    let v12 = frames_of(raw, Version::V12).expect("ok");
    assert_eq!(v12[0].header("id"), Some("a:b\nc\\d\re\\q"));
    let v11 = frames_of(raw, Version::V11).expect("ok");
    assert_eq!(v11[0].header("id"), Some("a:b\nc\\d\re\\q"));
    let v10 = frames_of(raw, Version::V10).expect("ok");
    assert_eq!(v10[0].header("id"), Some("a\\cb\\nc\\\\d\\re\\q"));
    let connect = frames_of(b"CONNECT\npasscode:a\\cb\n\n\0", Version::V12).expect("ok");
    assert_eq!(connect[0].header("passcode"), Some("a\\cb"));
}

#[test]
fn a_repeated_header_counts_by_its_first_value() {
    let frames = frames_of(b"ACK\nid:1\nid:2\n\n\0", Version::V12).expect("ok");
    assert_eq!(frames[0].header("id"), Some("1"));
}

#[test]
fn refuses_oversize_frames_and_too_many_headers_before_buffering_them_whole() {
    let mut decoder = Decoder::new(100, 4);
    decoder.push(&[b'A'; 50]).expect("fits");
    assert_eq!(decoder.decode(), Ok(None));
    decoder.push(&[b'A'; 60]).expect("buffered");
    assert_eq!(decoder.decode(), Err(CodecError::TooLarge(100)));

    let mut decoder = Decoder::new(100, 4);
    assert!(decoder.push(&[b'A'; 500]).is_err());

    let mut decoder = Decoder::new(64 * 1024, 16);
    let many: String = std::iter::once("SEND\n".to_owned())
        .chain((0..10_000).map(|n| format!("h{n}:v\n")))
        .collect();
    decoder.push(&many.as_bytes()[..60_000]).expect("fits");
    assert_eq!(decoder.decode(), Err(CodecError::TooManyHeaders(16)));

    let mut decoder = Decoder::new(100, 4);
    decoder.push(b"SEND\ncontent-length:500\n\n").expect("fits");
    assert_eq!(decoder.decode(), Err(CodecError::TooLarge(100)));
}

#[test]
fn malformed_frames_are_errors() {
    for bad in [
        &b"send\n\n\0"[..],
        b"SEND\nnocolon\n\n\0",
        b"\rX",
        b"SE ND\n\n\0",
        b"SEND\nh:\xff\n\n\0",
    ] {
        assert!(
            matches!(frames_of(bad, Version::V12), Err(CodecError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn connected_is_written_unescaped_and_messages_escaped_per_version() {
    let connected = encode(&Frame::new("CONNECTED").with("server", "a:b"), Version::V12);
    assert_eq!(connected, "CONNECTED\nserver:a:b\n\n\0");
    let message = Frame::new("MESSAGE").with("destination", "/x:y\r");
    assert_eq!(
        encode(&message, Version::V12),
        "MESSAGE\ndestination:/x\\cy\\r\n\n\0"
    );
    assert_eq!(
        encode(&message, Version::V11),
        "MESSAGE\ndestination:/x\\cy\r\n\n\0"
    );
    assert_eq!(
        encode(&message, Version::V10),
        "MESSAGE\ndestination:/x:y\n\n\0"
    );
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V11), Just(Version::V12)]
}

fn frame(version: Version) -> impl Strategy<Value = Frame> {
    // 1.1 writes CR as is, and a CR that ends a line reads as part of a CR LF.
    let text = if version == Version::V12 {
        "[^\u{0}]{0,12}"
    } else {
        "[^\u{0}\r]{0,12}"
    };
    (
        prop::sample::select(vec!["MESSAGE", "RECEIPT", "ERROR", "SUBSCRIBE", "ACK"]),
        prop::collection::vec(
            (text, text).prop_filter("names are not empty", |(n, _)| !n.is_empty()),
            0..6,
        ),
        "[^\u{0}]{0,40}",
    )
        .prop_map(|(command, headers, body)| Frame {
            command: command.to_owned(),
            headers,
            body: body.into_bytes(),
        })
}

proptest! {
    #[test]
    fn any_bytes_never_panic_and_the_buffer_stays_bounded(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)
    ) {
        let mut decoder = Decoder::new(256, 8);
        for chunk in chunks {
            if decoder.push(&chunk).is_err() {
                decoder = Decoder::new(256, 8);
                continue;
            }
            while let Ok(Some(_)) = decoder.decode() {}
            prop_assert!(decoder.buf.len() <= 2 * 256 + 2);
        }
    }

    #[test]
    fn stomp_shaped_noise_never_panics(
        pieces in prop::collection::vec(
            prop::sample::select(vec!["SEND", "CONNECT", "\n", "\r\n", ":", "\\", "\\c", "\0",
                "content-length:", "3", "-1", "x", "\u{e9}"]),
            0..60)
    ) {
        let bytes: String = pieces.concat();
        let mut decoder = Decoder::new(128, 4);
        decoder.set_version(Version::V12);
        if decoder.push(bytes.as_bytes()).is_ok() {
            while let Ok(Some(_)) = decoder.decode() {}
        }
    }

    #[test]
    fn what_it_writes_it_reads_back(
        (version, frames) in version().prop_flat_map(|v| (Just(v), prop::collection::vec(frame(v), 1..4))),
        cut in any::<prop::sample::Index>(),
    ) {
        let wire: String = frames.iter().map(|frame| encode(frame, version)).collect::<Vec<_>>().join("\n");
        let at = cut.index(wire.len() + 1);
        let mut decoder = Decoder::new(64 * 1024, 16);
        decoder.set_version(version);
        decoder.push(&wire.as_bytes()[..at]).expect("fits");
        let mut items = decode_all(&mut decoder).expect("reads");
        decoder.push(&wire.as_bytes()[at..]).expect("fits");
        items.extend(decode_all(&mut decoder).expect("reads"));
        let read: Vec<Frame> = items.into_iter().filter_map(|item| match item {
            Decoded::Frame(frame) => Some(frame),
            Decoded::HeartBeat => None,
        }).collect();
        prop_assert_eq!(read, frames);
    }
}

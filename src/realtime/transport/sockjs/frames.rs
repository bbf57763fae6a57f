//! The SockJS protocol's frames, as `sockjs-client` 1.x reads them: `o` (open), `h`
//! (heartbeat), `a[...]` (messages, each a JSON string) and `c[code,"reason"]` (close); and the
//! client's side, a JSON array of strings (or one string).

use serde_json::Value;

pub const OPEN: &str = "o";
pub const HEARTBEAT: &str = "h";

/// The close codes the protocol names.
pub const GO_AWAY: (u16, &str) = (3000, "Go away!");
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");

/// `messages` as one `a[...]` frame.
pub fn messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("a[");
    for (n, message) in messages.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        quote_into(&mut out, message);
    }
    out.push(']');
    out
}

/// `c[code,"reason"]`.
pub fn close((code, reason): (u16, &str)) -> String {
    let mut out = format!("c[{code},");
    quote_into(&mut out, reason);
    out.push(']');
    out
}

/// A JSON string, with the characters some browsers mangle escaped as the protocol asks.
fn quote_into(out: &mut String, text: &str) {
    let quoted = Value::String(text.to_owned()).to_string();
    for c in quoted.chars() {
        let code = c as u32;
        let risky = matches!(code, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff)
            || (0x7f..=0x9f).contains(&code);
        if risky {
            out.push_str(&format!("\\u{code:04x}"));
        } else {
            out.push(c);
        }
    }
}

/// Why a client's message could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Nothing was sent.
    Empty,
    /// Not a JSON string or array of strings.
    Broken,
}

/// The messages of a client's frame: a JSON array of strings, or one string.
pub fn client_messages(data: &[u8]) -> Result<Vec<String>, Refused> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(Refused::Empty);
    }
    match serde_json::from_slice::<Value>(data).map_err(|_| Refused::Broken)? {
        Value::String(message) => Ok(vec![message]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(message) => Ok(message),
                _ => Err(Refused::Broken),
            })
            .collect(),
        _ => Err(Refused::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::{client_messages, close, messages, Refused, ANOTHER_CONNECTION};

    #[test]
    fn frames_are_written_as_the_protocol_says() {
        assert_eq!(messages(["a\0", "b\"\n"]), "a[\"a\\u0000\",\"b\\\"\\n\"]");
        assert_eq!(messages(["\u{2028}"]), "a[\"\\u2028\"]");
        assert_eq!(
            close(ANOTHER_CONNECTION),
            "c[2010,\"Another connection still open\"]"
        );
    }

    #[test]
    fn client_frames_are_arrays_of_strings_or_one_string() {
        assert_eq!(
            client_messages(b"[\"x\",\"y\"]"),
            Ok(vec!["x".into(), "y".into()])
        );
        assert_eq!(client_messages(b"\"x\""), Ok(vec!["x".into()]));
        assert_eq!(client_messages(b""), Err(Refused::Empty));
        assert_eq!(client_messages(b"[1]"), Err(Refused::Broken));
        assert_eq!(client_messages(b"[\"x\""), Err(Refused::Broken));
    }
}

//! herald's own STOMP 1.0/1.1/1.2 codec: reads frames from a byte stream however it is cut
//! (several frames per WebSocket message, or one split across several), and writes them.
//!
//! Permissive where real clients need it: a line may end with LF or CR LF in any version,
//! heart-beat EOLs between frames are read as such, a `content-length` body may hold NULs and one
//! without it ends at the first NUL, and an escape sequence the version does not define is kept
//! as written (legacy stomp.js escapes nothing). Strict where it costs: a frame over the size
//! limit or with more headers than the cap is refused before it is buffered in full.

/// The STOMP versions herald speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V10,
    V11,
    V12,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    pub fn parse(text: &str) -> Option<Version> {
        match text.trim() {
            "1.0" => Some(Version::V10),
            "1.1" => Some(Version::V11),
            "1.2" => Some(Version::V12),
            _ => None,
        }
    }

    /// Whether header values are escaped in frames of `command` (never in 1.0, and never in
    /// CONNECT and CONNECTED, which precede the version's choice).
    fn escapes(self, command: &str) -> bool {
        self >= Version::V11 && !matches!(command, "CONNECT" | "STOMP" | "CONNECTED")
    }
}

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    /// In order of appearance; a repeated header keeps every entry, [`Frame::header`] the first.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: &str) -> Frame {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first value of header `name` (the one STOMP says counts).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What the decoder read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// An EOL between frames: the peer's heart-beat.
    HeartBeat,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// Reads frames from a byte stream, within a size limit and a header-count cap.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_frame: usize,
    max_headers: usize,
    version: Version,
}

impl Decoder {
    pub fn new(max_frame: usize, max_headers: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            max_frame,
            max_headers,
            version: Version::V10,
        }
    }

    /// Header values of frames after CONNECT are unescaped as `version` says.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// Takes more bytes. Refuses once more is buffered than two frames may hold (frames wait
    /// here only while the session authenticates or admits).
    pub fn push(&mut self, data: &[u8]) -> Result<(), CodecError> {
        if self.buf.len() + data.len() > 2 * self.max_frame + 2 {
            self.buf.clear();
            return Err(CodecError::TooLarge(self.max_frame));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next heart-beat or frame, `None` until one is complete.
    pub fn decode(&mut self) -> Result<Option<Decoded>, CodecError> {
        match self.buf.first() {
            None => return Ok(None),
            Some(b'\n') => {
                self.buf.drain(..1);
                return Ok(Some(Decoded::HeartBeat));
            }
            Some(b'\r') => {
                return match self.buf.get(1) {
                    None => Ok(None),
                    Some(b'\n') => {
                        self.buf.drain(..2);
                        Ok(Some(Decoded::HeartBeat))
                    }
                    Some(_) => Err(CodecError::Malformed("CR without LF")),
                };
            }
            Some(_) => {}
        }
        let Some((lines, body_start)) = self.header_lines()? else {
            return Ok(None);
        };
        let (command, headers) = self.parse_head(&lines)?;
        let length = match headers.iter().find(|(name, _)| name == "content-length") {
            Some((_, value)) => Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| CodecError::Malformed("content-length is not a number"))?,
            ),
            None => None,
        };
        let end = match length {
            Some(length) => {
                if body_start + length > self.max_frame {
                    self.buf.clear();
                    return Err(CodecError::TooLarge(self.max_frame));
                }
                match self.buf.get(body_start + length) {
                    None => return Ok(None),
                    Some(0) => body_start + length,
                    Some(_) => return Err(CodecError::Malformed("no NUL after content-length")),
                }
            }
            None => match self.buf[body_start..].iter().position(|&b| b == 0) {
                Some(at) => body_start + at,
                None if self.buf.len() > self.max_frame => {
                    self.buf.clear();
                    return Err(CodecError::TooLarge(self.max_frame));
                }
                None => return Ok(None),
            },
        };
        if end > self.max_frame {
            self.buf.clear();
            return Err(CodecError::TooLarge(self.max_frame));
        }
        let body = self.buf[body_start..end].to_vec();
        self.buf.drain(..=end);
        Ok(Some(Decoded::Frame(Frame {
            command,
            headers,
            body,
        })))
    }

    /// The frame's command and header lines (without EOLs) and where its body starts, once the
    /// blank line that ends them is buffered.
    #[allow(clippy::type_complexity)]
    fn header_lines(&mut self) -> Result<Option<(Vec<(usize, usize)>, usize)>, CodecError> {
        let mut lines = Vec::new();
        let mut start = 0;
        loop {
            let Some(at) = self.buf[start..].iter().position(|&b| b == b'\n') else {
                if self.buf[start..].contains(&0) {
                    return Err(CodecError::Malformed("a frame ended inside its headers"));
                }
                if self.buf.len() > self.max_frame {
                    self.buf.clear();
                    return Err(CodecError::TooLarge(self.max_frame));
                }
                return Ok(None);
            };
            let newline = start + at;
            let end = if newline > start && self.buf[newline - 1] == b'\r' {
                newline - 1
            } else {
                newline
            };
            if end == start {
                return Ok(Some((lines, newline + 1)));
            }
            if self.buf[start..end].contains(&0) {
                return Err(CodecError::Malformed("NUL in a header"));
            }
            lines.push((start, end));
            // The command line and the headers.
            if lines.len() > self.max_headers + 1 {
                self.buf.clear();
                return Err(CodecError::TooManyHeaders(self.max_headers));
            }
            start = newline + 1;
        }
    }

    fn parse_head(
        &self,
        lines: &[(usize, usize)],
    ) -> Result<(String, Vec<(String, String)>), CodecError> {
        let text = |(from, to): (usize, usize)| {
            std::str::from_utf8(&self.buf[from..to])
                .map_err(|_| CodecError::Malformed("a header that is not UTF-8"))
        };
        let command = text(lines[0])?.to_owned();
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CodecError::Malformed(
                "a command must be upper-case letters",
            ));
        }
        let escaped = self.version.escapes(&command);
        let mut headers = Vec::with_capacity(lines.len() - 1);
        for &line in &lines[1..] {
            let line = text(line)?;
            let (name, value) = line
                .split_once(':')
                .ok_or(CodecError::Malformed("a header without ':'"))?;
            headers.push(if escaped {
                (unescape(name), unescape(value))
            } else {
                (name.to_owned(), value.to_owned())
            });
        }
        Ok((command, headers))
    }
}

/// STOMP 1.1/1.2 unescaping; an undefined sequence is kept as written.
fn unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn escape_into(out: &mut String, text: &str, version: Version) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            ':' => out.push_str("\\c"),
            '\r' if version >= Version::V12 => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

/// Writes `frame` as `version` says: headers escaped where it escapes them, and where it does
/// not, any EOL (and, in a name, ':') that cannot be written left out. The body is written as
/// is (callers give text bodies) and a NUL ends the frame.
pub fn encode(frame: &Frame, version: Version) -> String {
    let body = String::from_utf8_lossy(&frame.body);
    let mut out = String::with_capacity(frame.command.len() + 64 + body.len());
    out.push_str(&frame.command);
    out.push('\n');
    let escaped = version.escapes(&frame.command);
    for (name, value) in &frame.headers {
        if escaped {
            escape_into(&mut out, name, version);
            out.push(':');
            escape_into(&mut out, value, version);
        } else {
            out.extend(name.chars().filter(|c| !matches!(c, '\n' | '\r' | ':')));
            out.push(':');
            out.extend(value.chars().filter(|c| !matches!(c, '\n' | '\r')));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&body);
    out.push('\0');
    out
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

//! The Hocuspocus wire protocol (`@hocuspocus/provider`, v2 to v4): several
//! documents on one WebSocket. Every message but the keep-alive answer is
//!
//! ```text
//! varString name · varUint type · body
//! ```
//!
//! where the name is the document's (or, for providers with
//! `sessionAwareness`, `<document>\0<session id>`, echoed back as is) and
//! the types that carry Yjs (sync 0, awareness 1, query awareness 3) have
//! exactly the y-websocket body, so `type · body` is a y-websocket message.
//! Incoming bytes are read by a bounded reader (every length checked
//! against what remains, no allocation) and Yjs bodies go through
//! `check::sync_message`; outgoing ones are written with yrs's encoders.
//! Depends on std, yrs and `check.rs` alone, so the fuzz target builds this
//! very file.

use super::check::{self, CheckError, SyncMessage};
use std::fmt;
use yrs::encoding::write::Write;

pub const SYNC: u32 = 0;
pub const AWARENESS: u32 = 1;
pub const AUTH: u32 = 2;
pub const QUERY_AWARENESS: u32 = 3;
pub const STATELESS: u32 = 5;
pub const CLOSE: u32 = 7;
pub const SYNC_STATUS: u32 = 8;
/// The provider's answer to a server's ping: this one byte alone, no name.
pub const PONG: u8 = 10;

/// Auth subtypes: the client's token, the server's refusal or acceptance.
const AUTH_TOKEN: u32 = 0;
const AUTH_PERMISSION_DENIED: u32 = 1;
const AUTH_AUTHENTICATED: u32 = 2;

/// Longest name accepted: a document id (256 bytes) and a session suffix.
pub const MAX_NAME_BYTES: usize = 512;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    Truncated,
    /// A varint longer than 5 bytes or above `u32::MAX`.
    VarintTooLarge,
    InvalidUtf8,
    NameTooLong,
    /// A message type a client does not send (or an unknown one).
    UnexpectedType(u32),
    /// An auth message that is not a token.
    UnexpectedAuth(u32),
    TrailingBytes(usize),
    /// The Yjs body failed the check.
    Yjs(CheckError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "truncated"),
            FrameError::VarintTooLarge => write!(f, "a varint is out of range"),
            FrameError::InvalidUtf8 => write!(f, "a string is not valid UTF-8"),
            FrameError::NameTooLong => {
                write!(f, "the document name exceeds {MAX_NAME_BYTES} bytes")
            }
            FrameError::UnexpectedType(t) => write!(f, "unexpected message type {t}"),
            FrameError::UnexpectedAuth(t) => write!(f, "unexpected auth message type {t}"),
            FrameError::TrailingBytes(n) => write!(f, "{n} bytes after the end"),
            FrameError::Yjs(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One client frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The keep-alive answer (no document).
    Pong,
    /// A message about one document (`name` as sent, session suffix kept).
    Doc { name: &'a str, body: Body<'a> },
}

/// What a client says about a document.
#[derive(Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// Sync, awareness or a query for it: `message` is these bytes read as
    /// a y-websocket message, checked down to its payload; `yjs` the bytes.
    Yjs {
        yjs: &'a [u8],
        message: SyncMessage<'a>,
    },
    /// The key (the provider's version string after it is skipped).
    Auth { token: &'a str },
    /// An application payload for the server's hooks.
    Stateless { payload: &'a str },
    /// The provider detached: this document's session ends.
    Close,
}

/// A cursor over untrusted bytes: bounds-checked reads, no allocation.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn var_u32(&mut self) -> Result<u32, FrameError> {
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = *self.buf.get(self.pos).ok_or(FrameError::Truncated)?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| FrameError::VarintTooLarge);
            }
        }
        Err(FrameError::VarintTooLarge)
    }

    fn string(&mut self) -> Result<&'a str, FrameError> {
        let len = self.var_u32()? as usize;
        if len > self.remaining() {
            return Err(FrameError::Truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        std::str::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    fn end(&self) -> Result<(), FrameError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(FrameError::TrailingBytes(n)),
        }
    }
}

/// Decodes and checks one client frame (one WebSocket message).
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    if bytes == [PONG] {
        return Ok(Frame::Pong);
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    let name = r.string()?;
    if name.len() > MAX_NAME_BYTES {
        return Err(FrameError::NameTooLong);
    }
    let at_type = r.pos;
    let body = match r.var_u32()? {
        SYNC | AWARENESS | QUERY_AWARENESS => {
            let yjs = &bytes[at_type..];
            let message = check::sync_message(yjs).map_err(FrameError::Yjs)?;
            r.rest();
            Body::Yjs { yjs, message }
        }
        AUTH => match r.var_u32()? {
            AUTH_TOKEN => {
                let token = r.string()?;
                // Providers since v3 add their version; older ones do not.
                if r.remaining() > 0 {
                    r.string()?;
                }
                Body::Auth { token }
            }
            other => return Err(FrameError::UnexpectedAuth(other)),
        },
        STATELESS => Body::Stateless {
            payload: r.string()?,
        },
        CLOSE => {
            // The server's own CLOSE carries a reason; a client's need not.
            if r.remaining() > 0 {
                r.string()?;
            }
            Body::Close
        }
        other => return Err(FrameError::UnexpectedType(other)),
    };
    r.end()?;
    Ok(Frame::Doc { name, body })
}

/// The document a name addresses: the name without a session suffix.
pub fn document_id(name: &str) -> &str {
    name.split_once('\0').map_or(name, |(doc, _)| doc)
}

fn header(name: &str, message_type: u32, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + body_len + 12);
    out.write_string(name);
    out.write_var(message_type);
    out
}

/// A y-websocket message (sync, awareness, query awareness: the type
/// numbers are the same) addressed to a document.
pub fn wrap(name: &str, y_websocket: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + y_websocket.len() + 5);
    out.write_string(name);
    out.write_all(y_websocket);
    out
}

/// The key was accepted, for reading and writing or for reading only.
pub fn authenticated(name: &str, read_only: bool) -> Vec<u8> {
    let scope = if read_only { "readonly" } else { "read-write" };
    let mut out = header(name, AUTH, scope.len() + 6);
    out.write_var(AUTH_AUTHENTICATED);
    out.write_string(scope);
    out
}

/// The key was refused, and why (an API error code).
pub fn permission_denied(name: &str, reason: &str) -> Vec<u8> {
    let mut out = header(name, AUTH, reason.len() + 6);
    out.write_var(AUTH_PERMISSION_DENIED);
    out.write_string(reason);
    out
}

/// Whether the update just received was stored (the provider counts its
/// unsynced changes down on `true`).
pub fn sync_status(name: &str, saved: bool) -> Vec<u8> {
    let mut out = header(name, SYNC_STATUS, 1);
    out.write_var(u32::from(saved));
    out
}

/// The server ended this document's session.
pub fn close(name: &str, reason: &str) -> Vec<u8> {
    let mut out = header(name, CLOSE, reason.len() + 5);
    out.write_string(reason);
    out
}

/// An auth message as a provider sends it (for tests and seeds).
pub fn auth_token(name: &str, token: &str, version: &str) -> Vec<u8> {
    let mut out = header(name, AUTH, token.len() + version.len() + 10);
    out.write_var(AUTH_TOKEN);
    out.write_string(token);
    out.write_string(version);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str, rest: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.write_string(name);
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn client_frames_decode() {
        assert_eq!(decode(&[PONG]), Ok(Frame::Pong));
        let auth = auth_token("d1", "sk_x", "4.8.0");
        assert_eq!(
            decode(&auth),
            Ok(Frame::Doc {
                name: "d1",
                body: Body::Auth { token: "sk_x" }
            })
        );
        // Without the version (providers before v3).
        let old = frame("d1", &[2, 0, 1, b'k']);
        assert!(matches!(
            decode(&old),
            Ok(Frame::Doc {
                body: Body::Auth { token: "k" },
                ..
            })
        ));
        let step1 = frame("d\0s1", &[0, 0, 1, 0]);
        match decode(&step1).unwrap() {
            Frame::Doc {
                name,
                body: Body::Yjs { yjs, message },
            } => {
                assert_eq!(document_id(name), "d");
                assert_eq!(yjs, &[0, 0, 1, 0]);
                assert_eq!(message, SyncMessage::Step1(&[0]));
                assert_eq!(wrap(name, yjs), step1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&frame("d", &[7])).unwrap(),
            Frame::Doc {
                name: "d",
                body: Body::Close
            }
        );
        assert_eq!(
            decode(&frame("d", &[5, 2, b'h', b'i'])).unwrap(),
            Frame::Doc {
                name: "d",
                body: Body::Stateless { payload: "hi" }
            }
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(decode(&[]), Err(FrameError::Truncated));
        assert_eq!(decode(&[5, b'a']), Err(FrameError::Truncated));
        assert_eq!(decode(&[1, 0xff]), Err(FrameError::InvalidUtf8));
        assert_eq!(
            decode(&[1, b'a', 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(FrameError::VarintTooLarge)
        );
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(decode(&frame(&long, &[7])), Err(FrameError::NameTooLong));
        // Server-to-client messages and unknown types.
        for t in [4u8, 6, 8, 9, 10, 11, 127] {
            assert_eq!(
                decode(&frame("d", &[t, 1])),
                Err(FrameError::UnexpectedType(u32::from(t)))
            );
        }
        assert_eq!(
            decode(&permission_denied("d", "no")),
            Err(FrameError::UnexpectedAuth(1))
        );
        assert!(matches!(
            decode(&frame("d", &[0, 2, 3, 1, 2, 3])),
            Err(FrameError::Yjs(_))
        ));
        assert_eq!(
            decode(&frame("d", &[5, 0, 9])),
            Err(FrameError::TrailingBytes(1))
        );
    }

    #[test]
    fn server_messages_have_the_wire_shape() {
        assert_eq!(sync_status("d", true), [1, b'd', 8, 1]);
        assert_eq!(sync_status("d", false), [1, b'd', 8, 0]);
        let mut ok = vec![1, b'd', 2, 2, 10];
        ok.extend_from_slice(b"read-write");
        assert_eq!(authenticated("d", false), ok);
        assert_eq!(&authenticated("d", true)[5..], b"readonly");
        assert_eq!(permission_denied("d", "x"), [1, b'd', 2, 1, 1, b'x']);
        assert_eq!(close("d", ""), [1, b'd', 7, 0]);
    }
}

//! A strict, bounded, non-recursive check of untrusted Yjs bytes (update v1,
//! state vector v1, y-websocket messages), run before yrs sees them.
//!
//! yrs trusts its input more than a server can: counts it reserves memory
//! for, varints it wraps, clocks it adds without checking, and a decoder that
//! recurses once per nesting level. This pass reads the same wire format with
//! every count bounded by the bytes that remain, every varint bounded by the
//! width yrs reads it into, clock ranges that cannot overflow, strings that
//! must be UTF-8, nesting capped by an explicit stack (so depth costs heap,
//! never stack), and no trailing bytes. It allocates nothing proportional to
//! a claimed count, so its time and memory are linear in the input.
//!
//! Where yrs (0.26) reads the format differently from Yjs (a content-JSON count
//! is read as count + 1 strings; an XmlHook type carries no key), the check
//! follows yrs: it vouches for exactly the bytes yrs will consume.

use std::fmt;

/// Deepest nesting of `Any` values (and of JSON text embedded in updates).
pub const MAX_DEPTH: usize = 64;

/// Largest client id: Yjs makes them as JavaScript numbers (53 bits).
const MAX_CLIENT: u64 = (1 << 53) - 1;

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    Empty,
    Truncated,
    /// A varint longer or larger than the field it fills.
    VarintTooLarge(&'static str),
    /// A count larger than the bytes that remain could hold.
    CountExceedsInput(&'static str),
    InvalidUtf8,
    ZeroLength(&'static str),
    ClockOverflow,
    UnknownTag(&'static str, u8),
    TooDeep,
    TrailingBytes(usize),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Empty => write!(f, "empty input"),
            CheckError::Truncated => write!(f, "truncated"),
            CheckError::VarintTooLarge(what) => write!(f, "{what} is out of range"),
            CheckError::CountExceedsInput(what) => {
                write!(f, "{what} count exceeds the bytes that follow")
            }
            CheckError::InvalidUtf8 => write!(f, "a string is not valid UTF-8"),
            CheckError::ZeroLength(what) => write!(f, "{what} has length 0"),
            CheckError::ClockOverflow => write!(f, "a clock range overflows 32 bits"),
            CheckError::UnknownTag(what, tag) => write!(f, "unknown {what} tag {tag}"),
            CheckError::TooDeep => write!(f, "values nested deeper than {MAX_DEPTH}"),
            CheckError::TrailingBytes(n) => write!(f, "{n} bytes after the end"),
        }
    }
}

impl std::error::Error for CheckError {}

pub type CheckResult<T> = Result<T, CheckError>;

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> CheckResult<u8> {
        let b = *self.buf.get(self.pos).ok_or(CheckError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> CheckResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(CheckError::Truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// An unsigned LEB128 varint of at most `max_bytes` bytes and `max` value.
    fn var_uint(&mut self, what: &'static str, max_bytes: usize, max: u64) -> CheckResult<u64> {
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let b = self.u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return if value <= max {
                    Ok(value)
                } else {
                    Err(CheckError::VarintTooLarge(what))
                };
            }
        }
        Err(CheckError::VarintTooLarge(what))
    }

    fn u32(&mut self, what: &'static str) -> CheckResult<u32> {
        // yrs reads these into u32 (and wraps anything larger).
        Ok(self.var_uint(what, 5, u64::from(u32::MAX))? as u32)
    }

    fn client(&mut self) -> CheckResult<u64> {
        self.var_uint("client id", 8, MAX_CLIENT)
    }

    /// A count of items that each take at least `min_bytes` bytes.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> CheckResult<usize> {
        let n = self.u32(what)? as usize;
        if n > self.remaining() / min_bytes.max(1) {
            return Err(CheckError::CountExceedsInput(what));
        }
        Ok(n)
    }

    /// lib0's signed varint: 6 bits and a sign in the first byte, then 7 per
    /// byte. Capped at 8 bytes (55 bits): JavaScript integers fit, and yrs's
    /// reader would shift past 64 bits beyond that.
    fn var_int(&mut self) -> CheckResult<()> {
        let mut b = self.u8()?;
        for _ in 0..7 {
            if b & 0x80 == 0 {
                return Ok(());
            }
            b = self.u8()?;
        }
        if b & 0x80 == 0 {
            Ok(())
        } else {
            Err(CheckError::VarintTooLarge("integer"))
        }
    }

    fn bytes(&mut self) -> CheckResult<&'a [u8]> {
        let len = self.u32("byte length")? as usize;
        self.skip(len)
    }

    fn string(&mut self) -> CheckResult<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CheckError::InvalidUtf8)
    }

    /// Embedded JSON text (format attributes, embeds): UTF-8 and shallow.
    fn json_text(&mut self) -> CheckResult<()> {
        json_depth(self.string()?)
    }

    fn id(&mut self) -> CheckResult<()> {
        self.client()?;
        self.u32("clock")?;
        Ok(())
    }

    fn end(&self) -> CheckResult<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CheckError::TrailingBytes(n)),
        }
    }
}

/// Checks one Yjs update (v1): exactly one, with nothing after it.
pub fn update(bytes: &[u8]) -> CheckResult<()> {
    if bytes.is_empty() {
        return Err(CheckError::Empty);
    }
    let mut r = Reader::new(bytes);
    read_update(&mut r)?;
    r.end()
}

/// Checks one state vector (v1), with nothing after it.
pub fn state_vector(bytes: &[u8]) -> CheckResult<()> {
    if bytes.is_empty() {
        return Err(CheckError::Empty);
    }
    let mut r = Reader::new(bytes);
    let clients = r.count("state vector", 2)?;
    for _ in 0..clients {
        r.id()?;
    }
    r.end()
}

/// A y-websocket message, checked down to its payload.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncMessage<'a> {
    /// Sync step 1: a state vector.
    Step1(&'a [u8]),
    /// Sync step 2: an update answering a step 1.
    Step2(&'a [u8]),
    /// An incremental update.
    Update(&'a [u8]),
    /// An awareness update (relayed as is).
    Awareness,
    /// A request for everyone's awareness.
    QueryAwareness,
    /// An auth message (nothing to do).
    Auth,
}

const MESSAGE_SYNC: u32 = 0;
const MESSAGE_AWARENESS: u32 = 1;
const MESSAGE_AUTH: u32 = 2;
const MESSAGE_QUERY_AWARENESS: u32 = 3;

/// Decodes and checks one y-websocket message (one WebSocket frame).
pub fn sync_message(bytes: &[u8]) -> CheckResult<SyncMessage<'_>> {
    let mut r = Reader::new(bytes);
    let message = match r.u32("message type")? {
        MESSAGE_SYNC => {
            let kind = r.u32("sync message type")?;
            let payload = r.bytes()?;
            match kind {
                0 => {
                    state_vector(payload)?;
                    SyncMessage::Step1(payload)
                }
                1 => {
                    update(payload)?;
                    SyncMessage::Step2(payload)
                }
                2 => {
                    update(payload)?;
                    SyncMessage::Update(payload)
                }
                other => return Err(CheckError::UnknownTag("sync message", other as u8)),
            }
        }
        MESSAGE_AWARENESS => {
            awareness(r.bytes()?)?;
            SyncMessage::Awareness
        }
        MESSAGE_AUTH => {
            r.u32("auth type")?;
            r.string()?;
            SyncMessage::Auth
        }
        MESSAGE_QUERY_AWARENESS => SyncMessage::QueryAwareness,
        other => return Err(CheckError::UnknownTag("message", other.min(255) as u8)),
    };
    r.end()?;
    Ok(message)
}

/// An awareness update: per client a clock and a JSON state.
fn awareness(bytes: &[u8]) -> CheckResult<()> {
    let mut r = Reader::new(bytes);
    let clients = r.count("awareness clients", 3)?;
    for _ in 0..clients {
        r.client()?;
        r.u32("awareness clock")?;
        r.json_text()?;
    }
    r.end()
}

fn read_update(r: &mut Reader) -> CheckResult<()> {
    // Per client: struct count, client, first clock (three bytes at least).
    let clients = r.count("client", 3)?;
    for _ in 0..clients {
        let structs = r.count("struct", 2)?;
        r.client()?;
        let mut clock = r.u32("clock")?;
        for _ in 0..structs {
            let len = read_struct(r)?;
            clock = clock.checked_add(len).ok_or(CheckError::ClockOverflow)?;
        }
    }
    read_delete_set(r)
}

const INFO_GC: u8 = 0;
const INFO_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_PARENT_SUB: u8 = 0x20;

/// One struct (GC, skip or item); returns its length in clock units.
fn read_struct(r: &mut Reader) -> CheckResult<u32> {
    let info = r.u8()?;
    if info == INFO_GC || info == INFO_SKIP {
        return match r.u32("struct length")? {
            0 => Err(CheckError::ZeroLength("a GC or skip struct")),
            len => Ok(len),
        };
    }
    if info & HAS_ORIGIN != 0 {
        r.id()?;
    }
    if info & HAS_RIGHT_ORIGIN != 0 {
        r.id()?;
    }
    if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
        // No origin to copy the parent from: the parent is named or an id.
        if r.u32("parent info")? == 1 {
            r.string()?;
        } else {
            r.id()?;
        }
        if info & HAS_PARENT_SUB != 0 {
            r.string()?;
        }
    }
    read_content(r, info & 0x1f)
}

/// Item content by its reference number; returns its length.
fn read_content(r: &mut Reader, content_ref: u8) -> CheckResult<u32> {
    match content_ref {
        // Deleted
        1 => r.u32("deleted length"),
        // JSON (legacy): yrs reads count + 1 strings.
        2 => {
            let count = r.count("json", 1)?;
            for _ in 0..=count {
                r.string()?;
            }
            Ok(count as u32 + 1)
        }
        // Binary
        3 => r.bytes().map(|_| 1),
        // String: its length is counted in UTF-16 units.
        4 => {
            let s = r.string()?;
            Ok(s.encode_utf16().count() as u32)
        }
        // Embed
        5 => r.json_text().map(|_| 1),
        // Format: key and value.
        6 => {
            r.string()?;
            r.json_text()?;
            Ok(1)
        }
        // Type
        7 => {
            match r.u8()? {
                // XmlElement carries its node name.
                3 => {
                    r.string()?;
                }
                0..=2 | 4..=6 | 9 | 15 => {}
                other => return Err(CheckError::UnknownTag("type", other)),
            }
            Ok(1)
        }
        // Any
        8 => {
            let count = r.count("any", 1)?;
            read_any_values(r, count)?;
            Ok(count as u32)
        }
        // Sub-document: guid and options.
        9 => {
            r.string()?;
            read_any_values(r, 1)?;
            Ok(1)
        }
        other => Err(CheckError::UnknownTag("content", other)),
    }
}

/// `count` lib0 `Any` values, nesting tracked on a heap stack.
fn read_any_values(r: &mut Reader, count: usize) -> CheckResult<()> {
    // (values left at this level, whether they are map entries with keys)
    let mut levels: Vec<(usize, bool)> = vec![(count, false)];
    while let Some(level) = levels.last_mut() {
        if level.0 == 0 {
            levels.pop();
            continue;
        }
        level.0 -= 1;
        if level.1 {
            r.string()?;
        }
        match r.u8()? {
            // undefined, null, false, true
            127 | 126 | 121 | 120 => {}
            125 => r.var_int()?,
            124 => {
                r.skip(4)?;
            }
            123 | 122 => {
                r.skip(8)?;
            }
            119 => {
                r.string()?;
            }
            118 => {
                let n = r.count("map", 2)?;
                push_level(&mut levels, (n, true))?;
            }
            117 => {
                let n = r.count("array", 1)?;
                push_level(&mut levels, (n, false))?;
            }
            116 => {
                r.bytes()?;
            }
            tag => return Err(CheckError::UnknownTag("value", tag)),
        }
    }
    Ok(())
}

fn push_level(levels: &mut Vec<(usize, bool)>, level: (usize, bool)) -> CheckResult<()> {
    if levels.len() >= MAX_DEPTH {
        return Err(CheckError::TooDeep);
    }
    levels.push(level);
    Ok(())
}

fn read_delete_set(r: &mut Reader) -> CheckResult<()> {
    let clients = r.count("delete set client", 2)?;
    for _ in 0..clients {
        r.client()?;
        let ranges = r.count("delete range", 2)?;
        for _ in 0..ranges {
            let clock = r.u32("deleted clock")?;
            let len = r.u32("deleted length")?;
            clock.checked_add(len).ok_or(CheckError::ClockOverflow)?;
        }
    }
    Ok(())
}

/// Bracket depth of JSON text, counted outside strings; the text's syntax
/// is left to the JSON parser, whose recursion this bounds.
fn json_depth(text: &str) -> CheckResult<()> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(CheckError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_update_and_state_vector_pass() {
        assert_eq!(update(&[0, 0]), Ok(()));
        assert_eq!(state_vector(&[0]), Ok(()));
    }

    #[test]
    fn counts_larger_than_the_input_are_refused_before_any_loop() {
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert_eq!(update(&bomb), Err(CheckError::CountExceedsInput("client")));
        // 2^32 would wrap to 0 in a 32-bit reader.
        let wrap = [0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
        assert_eq!(update(&wrap), Err(CheckError::VarintTooLarge("client")));
    }

    #[test]
    fn nesting_is_capped_without_recursion() {
        let mut bytes = vec![0x01, 0x01, 0x4f, 0x00, 0x08, 0x01, 0x05];
        bytes.extend_from_slice(b"notes");
        bytes.push(0x01);
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[0x75, 0x01]);
        }
        bytes.push(0x00);
        assert_eq!(update(&bytes), Err(CheckError::TooDeep));
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut bytes = vec![
            0x01, 0x01, 0xb8, 0x8c, 0xb0, 0xf6, 0xd4, 0xb2, 0xfb, 0x05, 0x00,
        ];
        bytes.extend_from_slice(b"\x04\x01\x05notes\x05hell\xf0\x00");
        assert!(update(&bytes).is_err());
    }

    /// Updates yrs writes, of every content kind: the check must pass them
    /// all. With STRATA_WRITE_FUZZ_SEEDS=DIR they are also written there as
    /// seeds for the fuzz corpora.
    #[test]
    fn everything_yrs_writes_passes() {
        use yrs::types::xml::{XmlElementPrelim, XmlFragment, XmlTextPrelim};
        use yrs::{Any, Array, Doc, Map, ReadTxn, Text, Transact, WriteTxn};
        let doc = Doc::with_client_id(0x1234_5678);
        let mut updates = Vec::new();
        let mut step = |f: &dyn Fn(&mut yrs::TransactionMut)| {
            let mut txn = doc.transact_mut();
            f(&mut txn);
            updates.push(txn.encode_update_v1());
        };
        step(&|txn| {
            txn.get_or_insert_text("t").insert(txn, 0, "héllo 🌍 wörld");
        });
        step(&|txn| {
            txn.get_or_insert_text("t").remove_range(txn, 0, 1);
        });
        step(&|txn| {
            let nested = Any::from_json(r#"{"a":[1,2.5,true,null,"x",{"b":[[-7]]}]}"#).unwrap();
            let map = txn.get_or_insert_map("m");
            map.insert(txn, "nested", nested);
            map.insert(txn, "bytes", Any::Buffer(vec![0u8, 255].into()));
            map.insert(txn, "big", Any::from(1i64 << 60));
        });
        step(&|txn| {
            let array = txn.get_or_insert_array("a");
            array.insert_range(txn, 0, [1i64, 2, 3]);
            array.remove(txn, 1);
        });
        step(&|txn| {
            let xml = txn.get_or_insert_xml_fragment("x");
            let p = xml.insert(txn, 0, XmlElementPrelim::empty("p"));
            p.insert(txn, 0, XmlTextPrelim::new("text"));
        });
        step(&|txn| {
            let text = txn.get_or_insert_text("t");
            let bold = Any::from_json(r#"{"bold":true}"#).unwrap();
            let attrs = yrs::types::Attrs::from([("bold".into(), bold)]);
            text.format(txn, 0, 2, attrs);
        });
        step(&|txn| {
            let sub = Doc::with_options(yrs::Options::with_guid_and_client_id(
                "sub".into(),
                yrs::block::ClientID::new(9),
            ));
            txn.get_or_insert_map("docs").insert(txn, "sub", sub);
        });
        let state = doc
            .transact()
            .encode_state_as_update_v1(&yrs::StateVector::default());
        let sv = yrs::updates::encoder::Encode::encode_v1(&doc.transact().state_vector());
        for (i, u) in updates.iter().chain([&state]).enumerate() {
            assert_eq!(update(u), Ok(()), "update {i}: {u:?}");
        }
        assert_eq!(state_vector(&sv), Ok(()));
        if let Ok(dir) = std::env::var("STRATA_WRITE_FUZZ_SEEDS") {
            let dir = std::path::Path::new(&dir);
            for (i, u) in updates.iter().chain([&state]).enumerate() {
                std::fs::write(dir.join(format!("update-{i}")), u).unwrap();
            }
            std::fs::write(dir.join("state-vector"), &sv).unwrap();
        }
    }

    #[test]
    fn json_depth_ignores_brackets_inside_strings() {
        assert_eq!(json_depth(r#"{"a":"[[[[[[["}"#), Ok(()));
        assert_eq!(
            json_depth(&"[".repeat(MAX_DEPTH + 1)),
            Err(CheckError::TooDeep)
        );
    }
}

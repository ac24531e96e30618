//! Journal entries and their byte encoding (see `docs/journal-format.md`, which this file must
//! match byte for byte).
//!
//! A journal record (one LMDB value) is a *segment*: a format-version byte followed by one or
//! more entries, each
//!
//! ```text
//! kind: u8 | flags: u8 | payload_len: ULEB128 | payload | [call site] | crc32c: u32 LE
//! ```
//!
//! where the call site (present when `flags & 1`) is `file_len: ULEB128 | file (UTF-8) |
//! line: ULEB128`, followed when `flags & 2` by `function_len: ULEB128 | function (UTF-8)`,
//! and the CRC32C covers every byte of the entry before it.

use std::sync::Arc;

/// Format version written at the start of every segment.
pub const SEGMENT_VERSION: u8 = 1;

/// `flags` bit: a call site follows the payload.
const FLAG_CALL_SITE: u8 = 1;
/// `flags` bit: an interned call site follows the payload: the index of its code location among
/// those defined earlier in the segment (the location itself follows when the index is new).
const FLAG_INTERNED_SITE: u8 = 2;

/// The code locations defined so far in one segment, in order of definition.
#[derive(Default)]
pub struct Codes {
    defined: Vec<Arc<Code>>,
    last: usize,
}

impl Codes {
    /// The index of `code`, and whether it is new (then its definition is written).
    fn index(&mut self, code: &Arc<Code>) -> (usize, bool) {
        if let Some(last) = self.defined.get(self.last) {
            if Arc::ptr_eq(last, code) {
                return (self.last, false);
            }
        }
        let found = self
            .defined
            .iter()
            .position(|c| Arc::ptr_eq(c, code) || **c == **code);
        let (i, new) = match found {
            Some(i) => (i, false),
            None => {
                self.defined.push(Arc::clone(code));
                (self.defined.len() - 1, true)
            }
        };
        self.last = i;
        (i, new)
    }
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A raw 64-bit draw of the invocation's random stream.
    Random(u64),
    /// A version-4 UUID drawn from the uuid stream.
    Uuid([u8; 16]),
    /// A clock reading, microseconds since the Unix epoch (UTC).
    Time(i64),
    /// The recorded outcome of a named side effect: its value, or the exception it raised.
    SideEffect(Box<SideEffect>),
    /// The dispatch of a child invocation.
    Child(Box<Child>),
    /// A read of workflow data.
    DataRead(Box<DataRead>),
    /// A write of workflow data, by digest of the value written.
    DataWrite(Box<DataWrite>),
    /// A `patched(change_id)` marker: this run took the new branch of that change.
    Patch(Arc<str>),
}

// The rare, larger operations are boxed so an entry stays 32 bytes in memory: a Recorder holds
// the whole journal it replays, and a workflow may record a million draws. Names and keys are
// shared strings: a loop writing one key records it many times but stores it once.

/// The recorded outcome of a named side effect (codec bytes): the value its function returned,
/// or, when `failed`, the exception it raised (as an invocation record stores an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideEffect {
    pub name: Arc<str>,
    pub value: Vec<u8>,
    pub failed: bool,
}

/// The dispatch of a child invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub child_id: [u8; 16],
    pub args_digest: [u8; 16],
    pub task_id: Arc<str>,
}

/// A read of workflow data: the value seen (codec bytes), or `None` when absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRead {
    pub key: Arc<str>,
    pub value: Option<Vec<u8>>,
}

/// A write of workflow data, by digest of the value written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataWrite {
    pub key: Arc<str>,
    pub value_digest: [u8; 16],
}

impl Op {
    pub fn side_effect(name: impl Into<Arc<str>>, value: Vec<u8>, failed: bool) -> Op {
        Op::SideEffect(Box::new(SideEffect {
            name: name.into(),
            value,
            failed,
        }))
    }
    pub fn child(child_id: [u8; 16], args_digest: [u8; 16], task_id: impl Into<Arc<str>>) -> Op {
        Op::Child(Box::new(Child {
            child_id,
            args_digest,
            task_id: task_id.into(),
        }))
    }
    pub fn data_read(key: impl Into<Arc<str>>, value: Option<Vec<u8>>) -> Op {
        Op::DataRead(Box::new(DataRead {
            key: key.into(),
            value,
        }))
    }
    pub fn data_write(key: impl Into<Arc<str>>, value_digest: [u8; 16]) -> Op {
        Op::DataWrite(Box::new(DataWrite {
            key: key.into(),
            value_digest,
        }))
    }
}

/// The `kind` byte of each operation.
pub mod kind {
    pub const RANDOM: u8 = 1;
    pub const UUID: u8 = 2;
    pub const TIME: u8 = 3;
    pub const SIDE_EFFECT: u8 = 4;
    pub const CHILD: u8 = 5;
    pub const DATA_READ: u8 = 6;
    pub const DATA_WRITE: u8 = 7;
    /// A side effect whose function raised: the payload of kind 4, holding the error.
    pub const SIDE_EFFECT_ERROR: u8 = 8;
    /// A `patched(change_id)` marker (store format 5).
    pub const PATCH: u8 = 9;
}

impl Op {
    pub fn kind(&self) -> u8 {
        match self {
            Op::Random(_) => kind::RANDOM,
            Op::Uuid(_) => kind::UUID,
            Op::Time(_) => kind::TIME,
            Op::SideEffect(e) if e.failed => kind::SIDE_EFFECT_ERROR,
            Op::SideEffect(_) => kind::SIDE_EFFECT,
            Op::Child(_) => kind::CHILD,
            Op::DataRead(_) => kind::DATA_READ,
            Op::DataWrite(_) => kind::DATA_WRITE,
            Op::Patch(_) => kind::PATCH,
        }
    }

    /// True when replaying this entry's value requires it to have been stored: a clock
    /// reading, a data read or a side effect cannot be regenerated from the seed.
    pub fn is_volatile(&self) -> bool {
        matches!(self, Op::Time(_) | Op::SideEffect(_) | Op::DataRead(_))
    }

    /// A short human description, used in non-determinism errors.
    pub fn describe(&self) -> String {
        match self {
            Op::Random(_) => "random()".into(),
            Op::Uuid(_) => "uuid()".into(),
            Op::Time(_) => "utc_now()".into(),
            Op::SideEffect(e) => format!("side_effect({:?})", e.name),
            Op::Child(c) => format!(
                "execute_task({}, args digest {})",
                c.task_id,
                hex(&c.args_digest[..4])
            ),
            Op::DataRead(r) => format!("get_data({:?})", r.key),
            Op::DataWrite(w) => format!(
                "set_data({:?}, value digest {})",
                w.key,
                hex(&w.value_digest[..4])
            ),
            Op::Patch(id) => format!("patched({id:?})"),
        }
    }
}

/// Where an operation was made: the code it ran in (shared by every entry made there) and the
/// line. Reported in divergences, never compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSite {
    pub code: Arc<Code>,
    pub line: u32,
}

/// A code location: the file and the function (empty when not recorded, as in entries of
/// flag `0x01`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    pub file: Arc<str>,
    pub function: Arc<str>,
}

/// One journal entry: an operation plus the optional call site that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    pub call_site: Option<Box<CallSite>>,
}

impl Entry {
    pub fn new(op: Op) -> Self {
        Entry {
            op,
            call_site: None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Append `v` as ULEB128 (7 bits a byte, low first, high bit = more).
pub fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uleb(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn uleb_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn str_len(s: &str) -> usize {
    uleb_len(s.len() as u64) + s.len()
}

/// The length `encode_payload` writes, so an entry is encoded in place.
fn payload_len(op: &Op) -> usize {
    match op {
        Op::Random(_) | Op::Time(_) => 8,
        Op::Uuid(_) => 16,
        Op::SideEffect(e) => str_len(&e.name) + e.value.len(),
        Op::Child(c) => 32 + c.task_id.len(),
        Op::DataRead(r) => str_len(&r.key) + 1 + r.value.as_ref().map_or(0, Vec::len),
        Op::DataWrite(w) => str_len(&w.key) + 16,
        Op::Patch(id) => id.len(),
    }
}

fn encode_payload(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Random(v) => out.extend_from_slice(&v.to_le_bytes()),
        Op::Uuid(u) => out.extend_from_slice(u),
        Op::Time(t) => out.extend_from_slice(&t.to_le_bytes()),
        Op::SideEffect(e) => {
            put_str(out, &e.name);
            out.extend_from_slice(&e.value);
        }
        Op::Child(c) => {
            out.extend_from_slice(&c.child_id);
            out.extend_from_slice(&c.args_digest);
            out.extend_from_slice(c.task_id.as_bytes());
        }
        Op::DataRead(r) => {
            put_str(out, &r.key);
            match &r.value {
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(v);
                }
                None => out.push(0),
            }
        }
        Op::DataWrite(w) => {
            put_str(out, &w.key);
            out.extend_from_slice(&w.value_digest);
        }
        Op::Patch(id) => out.extend_from_slice(id.as_bytes()),
    }
}

/// Append one encoded entry to `out`, the first of its segment.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    encode_entry_in(entry, out, &mut Codes::default());
}

/// Append one encoded entry to `out`, interning its call site in `codes` (its segment's).
pub fn encode_entry_in(entry: &Entry, out: &mut Vec<u8>, codes: &mut Codes) {
    let start = out.len();
    out.push(entry.op.kind());
    // A call site without a function (read from an entry of flag 0x01) keeps that form.
    let flags = match entry.call_site.as_deref() {
        None => 0,
        Some(site) if site.code.function.is_empty() => FLAG_CALL_SITE,
        Some(_) => FLAG_INTERNED_SITE,
    };
    out.push(flags);
    let len = payload_len(&entry.op);
    put_uleb(out, len as u64);
    let payload_start = out.len();
    encode_payload(&entry.op, out);
    debug_assert_eq!(
        out.len() - payload_start,
        len,
        "payload_len of {:?}",
        entry.op
    );
    if let Some(site) = entry
        .call_site
        .as_deref()
        .filter(|_| flags == FLAG_CALL_SITE)
    {
        put_str(out, &site.code.file);
        put_uleb(out, u64::from(site.line));
    } else if let Some(site) = entry.call_site.as_deref() {
        let (index, new) = codes.index(&site.code);
        put_uleb(out, index as u64);
        if new {
            put_str(out, &site.code.file);
            put_str(out, &site.code.function);
        }
        put_uleb(out, u64::from(site.line));
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Encode a segment: the version byte, then each entry.
pub fn encode_segment(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * 16);
    out.push(SEGMENT_VERSION);
    let mut codes = Codes::default();
    for e in entries {
        encode_entry_in(e, &mut out, &mut codes);
    }
    out
}

/// Why a segment could not be decoded: the position of the bad entry and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub position: u64,
    pub detail: String,
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn uleb(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn string(&mut self) -> Option<Arc<str>> {
        let n = usize::try_from(self.uleb()?).ok()?;
        std::str::from_utf8(self.take(n)?).ok().map(Arc::from)
    }
}

fn decode_payload(kind_byte: u8, p: &[u8]) -> Result<Op, String> {
    let mut r = Reader { buf: p, at: 0 };
    let fixed = |n: usize| -> Result<&[u8], String> {
        if p.len() == n {
            Ok(p)
        } else {
            Err(format!(
                "kind {kind_byte} payload has {} bytes, expected {n}",
                p.len()
            ))
        }
    };
    let bad = || format!("malformed payload of kind {kind_byte}");
    Ok(match kind_byte {
        kind::RANDOM => Op::Random(u64::from_le_bytes(fixed(8)?.try_into().unwrap())),
        kind::UUID => Op::Uuid(fixed(16)?.try_into().unwrap()),
        kind::TIME => Op::Time(i64::from_le_bytes(fixed(8)?.try_into().unwrap())),
        kind::SIDE_EFFECT | kind::SIDE_EFFECT_ERROR => {
            let name = r.string().ok_or_else(bad)?;
            Op::SideEffect(Box::new(SideEffect {
                name,
                value: p[r.at..].to_vec(),
                failed: kind_byte == kind::SIDE_EFFECT_ERROR,
            }))
        }
        kind::CHILD => {
            if p.len() < 32 {
                return Err(bad());
            }
            let task_id = Arc::from(std::str::from_utf8(&p[32..]).map_err(|_| bad())?);
            Op::Child(Box::new(Child {
                child_id: p[..16].try_into().unwrap(),
                args_digest: p[16..32].try_into().unwrap(),
                task_id,
            }))
        }
        kind::DATA_READ => {
            let key = r.string().ok_or_else(bad)?;
            let value = match r.byte().ok_or_else(bad)? {
                0 if r.at == p.len() => None,
                1 => Some(p[r.at..].to_vec()),
                _ => return Err(bad()),
            };
            Op::DataRead(Box::new(DataRead { key, value }))
        }
        kind::DATA_WRITE => {
            let key = r.string().ok_or_else(bad)?;
            let d = r.take(16).filter(|_| r.at == p.len()).ok_or_else(bad)?;
            Op::DataWrite(Box::new(DataWrite {
                key,
                value_digest: d.try_into().unwrap(),
            }))
        }
        kind::PATCH => Op::Patch(Arc::from(std::str::from_utf8(p).map_err(|_| bad())?)),
        other => return Err(format!("unknown entry kind {other}")),
    })
}

/// Decode a segment whose first entry is at `first_position`, verifying every checksum.
pub fn decode_segment(buf: &[u8], first_position: u64) -> Result<Vec<Entry>, DecodeError> {
    let fail = |position: u64, detail: String| DecodeError { position, detail };
    let version = *buf
        .first()
        .ok_or_else(|| fail(first_position, "empty segment".into()))?;
    if version != SEGMENT_VERSION {
        return Err(fail(
            first_position,
            format!("unknown segment format version {version}"),
        ));
    }
    let mut r = Reader { buf, at: 1 };
    let mut out = Vec::new();
    let mut codes: Vec<Arc<Code>> = Vec::new();
    while r.at < buf.len() {
        let position = first_position + out.len() as u64;
        let truncated = || fail(position, "truncated entry".into());
        let start = r.at;
        let kind_byte = r.byte().ok_or_else(truncated)?;
        let flags = r.byte().ok_or_else(truncated)?;
        let len = r
            .uleb()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(truncated)?;
        let payload = r.take(len).ok_or_else(truncated)?;
        let call_site = if flags & FLAG_INTERNED_SITE != 0 {
            let index = r
                .uleb()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(truncated)?;
            let code = match codes.get(index) {
                Some(code) => Arc::clone(code),
                None if index == codes.len() => {
                    let file = r.string().ok_or_else(truncated)?;
                    let function = r.string().ok_or_else(truncated)?;
                    codes.push(Arc::new(Code { file, function }));
                    Arc::clone(&codes[index])
                }
                None => {
                    return Err(fail(
                        position,
                        format!("call site {index} refers to no code location of its segment"),
                    ))
                }
            };
            let line = r
                .uleb()
                .and_then(|l| u32::try_from(l).ok())
                .ok_or_else(truncated)?;
            Some(CallSite { code, line })
        } else if flags & FLAG_CALL_SITE != 0 {
            let file = r.string().ok_or_else(truncated)?;
            let line = r
                .uleb()
                .and_then(|l| u32::try_from(l).ok())
                .ok_or_else(truncated)?;
            Some(CallSite {
                code: Arc::new(Code {
                    file,
                    function: Arc::from(""),
                }),
                line,
            })
        } else {
            None
        };
        let body_end = r.at;
        let crc_bytes = r.take(4).ok_or_else(truncated)?;
        let stored = u32::from_le_bytes(crc_bytes.try_into().unwrap());
        let actual = crc32c::crc32c(&buf[start..body_end]);
        if stored != actual {
            return Err(fail(
                position,
                format!("checksum mismatch (stored {stored:08x}, computed {actual:08x})"),
            ));
        }
        let op = decode_payload(kind_byte, payload).map_err(|d| fail(position, d))?;
        out.push(Entry {
            op,
            call_site: call_site.map(Box::new),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u64>().prop_map(Op::Random),
            any::<[u8; 16]>().prop_map(Op::Uuid),
            any::<i64>().prop_map(Op::Time),
            (
                ".{0,12}",
                proptest::collection::vec(any::<u8>(), 0..40),
                any::<bool>()
            )
                .prop_map(|(name, value, failed)| Op::side_effect(
                    name.as_str(),
                    value,
                    failed
                )),
            (any::<[u8; 16]>(), any::<[u8; 16]>(), ".{0,20}").prop_map(|(c, d, t)| Op::child(
                c,
                d,
                t.as_str()
            )),
            (
                ".{0,12}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
            )
                .prop_map(|(key, value)| Op::data_read(key.as_str(), value)),
            (".{0,12}", any::<[u8; 16]>())
                .prop_map(|(key, value_digest)| Op::data_write(key.as_str(), value_digest)),
            ".{0,12}".prop_map(|id| Op::Patch(id.as_str().into())),
        ]
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        (
            arb_op(),
            proptest::option::of((".{0,16}", ".{0,8}", any::<u32>())),
        )
            .prop_map(|(op, call_site)| Entry {
                op,
                call_site: call_site.map(|(file, function, line): (String, String, u32)| {
                    Box::new(CallSite {
                        code: Arc::new(Code {
                            file: file.into(),
                            function: function.into(),
                        }),
                        line,
                    })
                }),
            })
    }

    proptest! {
        #[test]
        fn segments_round_trip(entries in proptest::collection::vec(arb_entry(), 1..30), first in 0u64..1_000_000) {
            let buf = encode_segment(&entries);
            prop_assert_eq!(decode_segment(&buf, first).unwrap(), entries);
        }

        #[test]
        fn any_flipped_byte_is_detected(entries in proptest::collection::vec(arb_entry(), 1..10), idx in any::<usize>(), bit in 0u8..8) {
            let mut buf = encode_segment(&entries);
            let i = 1 + idx % (buf.len() - 1);
            buf[i] ^= 1 << bit;
            // CRC32C catches every single-bit error; a flip in a length prefix re-frames the
            // entry and fails the checksum (or the framing) instead.
            prop_assert!(decode_segment(&buf, 0).is_err());
        }
    }

    #[test]
    fn an_entry_is_32_bytes_in_memory() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn small_entries_stay_small() {
        let mut out = Vec::new();
        encode_entry(&Entry::new(Op::Random(7)), &mut out);
        assert_eq!(out.len(), 15);
        out.clear();
        encode_entry(&Entry::new(Op::Uuid([1; 16])), &mut out);
        assert_eq!(out.len(), 23);
    }

    #[test]
    fn a_patch_marker_holds_its_change_id() {
        let entries = vec![Entry::new(Op::Patch("v2".into()))];
        let buf = encode_segment(&entries);
        // version, kind 9, flags, length 2, "v2", CRC.
        assert_eq!(&buf[..6], &[1, 9, 0, 2, b'v', b'2']);
        assert_eq!(buf.len(), 10);
        assert_eq!(decode_segment(&buf, 0).unwrap(), entries);
    }

    #[test]
    fn a_code_location_is_written_once_per_segment() {
        let code = Arc::new(Code {
            file: "/app/flow.py".into(),
            function: "main".into(),
        });
        let at = |line| Entry {
            op: Op::Random(7),
            call_site: Some(Box::new(CallSite {
                code: Arc::clone(&code),
                line,
            })),
        };
        let one = encode_segment(&[at(19)]);
        // kind, flags 0x02, length, 8 payload bytes, code 0, file, function, line 19, crc
        assert_eq!(&one[1..4], &[1, 2, 8]);
        assert_eq!(one.len(), 1 + 3 + 8 + 1 + 13 + 5 + 1 + 4);
        let many = encode_segment(&[at(19), at(20), at(21)]);
        // Each later entry refers to code 0: 2 bytes of call site.
        assert_eq!(many.len(), one.len() + 2 * (3 + 8 + 2 + 4));
        let back = decode_segment(&many, 0).unwrap();
        assert_eq!(back, vec![at(19), at(20), at(21)]);
        assert!(Arc::ptr_eq(
            &back[1].call_site.as_ref().unwrap().code,
            &back[2].call_site.as_ref().unwrap().code
        ));
    }

    #[test]
    fn a_call_site_naming_an_undefined_code_location_is_refused() {
        // Random(7) whose call site refers to code 3 of a segment that defines none.
        let mut buf = vec![SEGMENT_VERSION, kind::RANDOM, FLAG_INTERNED_SITE, 8];
        buf.extend_from_slice(&7u64.to_le_bytes());
        buf.extend_from_slice(&[3, 1]);
        let crc = crc32c::crc32c(&buf[1..]);
        buf.extend_from_slice(&crc.to_le_bytes());
        let err = decode_segment(&buf, 5).unwrap_err();
        assert_eq!(err.position, 5);
        assert!(err.detail.contains("code location"), "{}", err.detail);
    }

    #[test]
    fn corruption_names_the_position() {
        let entries = vec![Entry::new(Op::Random(1)), Entry::new(Op::Time(2))];
        let mut buf = encode_segment(&entries);
        let last = buf.len() - 6;
        buf[last] ^= 0xff;
        let err = decode_segment(&buf, 40).unwrap_err();
        assert_eq!(err.position, 41);
        assert!(err.detail.contains("checksum"), "{}", err.detail);
    }
}

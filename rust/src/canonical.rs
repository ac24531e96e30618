//! The digest form of payload bytes.
//!
//! Payloads keep the insertion order of their maps (a dict reads back in the order it was
//! built). Digests must not depend on that order: the journal compares an `execute_task`'s
//! arguments and a `set_data`'s value by digest, and two dicts that differ only in key order
//! are the same argument. So a digest is taken over the *canonical form* of the bytes: the same
//! CBOR with the pairs of every map sorted by the bytes of their key, shorter keys first, then
//! bytewise (RFC 7049 §3.9, the order `cbor2.dumps(canonical=True)` writes). Payloads written
//! before maps kept their order were written in exactly this form, so their recorded digests
//! still match.
//!
//! Only maps are reordered; everything else (scalars, arrays, tags and the sets inside them,
//! which the codec always writes sorted) is copied as it is.

use std::borrow::Cow;

/// Deepest nesting followed (the codec writes at most 128 containers, a set three levels each).
const MAX_DEPTH: u32 = 512;

/// `data` in canonical form: borrowed when every map in it is already in order (scalars,
/// arrays, dicts built in key order), else a copy with the maps sorted. None when `data` is
/// not one well-formed, definite-length CBOR item (the codec never writes such bytes).
pub fn canonical(data: &[u8]) -> Option<Cow<'_, [u8]>> {
    let (end, ordered) = scan(data, 0, MAX_DEPTH)?;
    if end != data.len() {
        return None;
    }
    if ordered {
        return Some(Cow::Borrowed(data));
    }
    let mut writer = Writer {
        data,
        out: Vec::with_capacity(data.len()),
        scratch: Vec::new(),
        spans: Vec::new(),
    };
    writer.write(0);
    Some(Cow::Owned(writer.out))
}

/// The head of the item at `at`: (major type, argument, head length). For major type 7 the
/// argument is the simple value or float bits, not a length.
#[inline]
fn head(data: &[u8], at: usize) -> Option<(u8, u64, usize)> {
    let first = *data.get(at)?;
    let (major, info) = (first >> 5, first & 0x1f);
    let rest = data.get(at + 1..)?;
    Some(match info {
        0..=23 => (major, u64::from(info), 1),
        24 => (major, u64::from(*rest.first()?), 2),
        25 => (
            major,
            u64::from(u16::from_be_bytes(*rest.first_chunk()?)),
            3,
        ),
        26 => (
            major,
            u64::from(u32::from_be_bytes(*rest.first_chunk()?)),
            5,
        ),
        27 => (major, u64::from_be_bytes(*rest.first_chunk()?), 9),
        _ => return None, // reserved, or indefinite length
    })
}

/// The end of the item at `at`, and whether every map in it is in canonical order.
fn scan(data: &[u8], at: usize, depth: u32) -> Option<(usize, bool)> {
    let (major, arg, used) = head(data, at)?;
    let mut at = at + used;
    match major {
        0 | 1 | 7 => Some((at, true)),
        2 | 3 => {
            let end = at.checked_add(usize::try_from(arg).ok()?)?;
            (end <= data.len()).then_some((end, true))
        }
        4 => {
            let depth = depth.checked_sub(1)?;
            let mut ordered = true;
            for _ in 0..arg {
                let (end, inner) = scan(data, at, depth)?;
                (at, ordered) = (end, ordered && inner);
            }
            Some((at, ordered))
        }
        5 => {
            let depth = depth.checked_sub(1)?;
            let mut ordered = true;
            let mut previous: Option<&[u8]> = None;
            for _ in 0..arg {
                let (key_end, key_ordered) = scan(data, at, depth)?;
                let key = &data[at..key_end];
                let (end, value_ordered) = scan(data, key_end, depth)?;
                ordered = ordered
                    && key_ordered
                    && value_ordered
                    && previous.map_or(true, |p| sort_key(p) <= sort_key(key));
                previous = Some(key);
                at = end;
            }
            Some((at, ordered))
        }
        6 => scan(data, at, depth.checked_sub(1)?),
        _ => None,
    }
}

/// The order of keys in a canonical map.
fn sort_key(key: &[u8]) -> (usize, &[u8]) {
    (key.len(), key)
}

/// Writes canonical forms, reusing its buffers: one scratch copy and one stack of pair spans
/// serve every map, however nested.
struct Writer<'a> {
    data: &'a [u8],
    out: Vec<u8>,
    scratch: Vec<u8>,
    /// (key start, key end, pair end) in `out`, of the pairs of the maps being written.
    spans: Vec<(usize, usize, usize)>,
}

impl Writer<'_> {
    /// Append the canonical form of the item at `at` (already checked by `scan`) to `out`;
    /// returns the end of the item in `data`.
    fn write(&mut self, at: usize) -> usize {
        let data = self.data;
        let Some((major, arg, used)) = head(data, at) else {
            unreachable!("checked by scan")
        };
        let start = at;
        let at = at + used;
        match major {
            4 => {
                self.out.extend_from_slice(&data[start..at]);
                (0..arg).fold(at, |at, _| self.write(at))
            }
            5 => {
                self.out.extend_from_slice(&data[start..at]);
                // The pairs are written in place, then moved into order.
                let (base, mark) = (self.out.len(), self.spans.len());
                let mut at = at;
                for _ in 0..arg {
                    let key_start = self.out.len();
                    at = self.write(at);
                    let key_end = self.out.len();
                    at = self.write(at);
                    self.spans.push((key_start, key_end, self.out.len()));
                }
                let out = &self.out;
                let key = |&(start, end, _): &(usize, usize, usize)| sort_key(&out[start..end]);
                let pairs = &mut self.spans[mark..];
                if !pairs.windows(2).all(|w| key(&w[0]) <= key(&w[1])) {
                    pairs.sort_by(|a, b| key(a).cmp(&key(b)));
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&self.out[base..]);
                    self.out.truncate(base);
                    for &(start, _, end) in &self.spans[mark..] {
                        self.out
                            .extend_from_slice(&self.scratch[start - base..end - base]);
                    }
                }
                self.spans.truncate(mark);
                at
            }
            6 => {
                self.out.extend_from_slice(&data[start..at]);
                self.write(at)
            }
            2 | 3 => {
                let end = at + arg as usize; // in bounds: checked by scan
                self.out.extend_from_slice(&data[start..end]);
                end
            }
            _ => {
                self.out.extend_from_slice(&data[start..at]);
                at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn ordered_bytes_are_borrowed() {
        // {"a": 2.0, "b": 1}, [1, "a"], 7
        for data in [hex("a26161f94000616201"), hex("82016161"), hex("07")] {
            assert!(matches!(canonical(&data), Some(Cow::Borrowed(_))));
        }
    }

    #[test]
    fn maps_are_sorted_shorter_keys_first_then_bytewise_at_every_depth() {
        // [{"b": 1, "a": [{"zz": 1, "y": 2}]}]  ->  [{"a": [{"y": 2, "zz": 1}], "b": 1}]
        let data = hex("81a2616201616181a2627a7a01617902");
        let sorted = hex("81a2616181a2617902627a7a01616201");
        assert_eq!(canonical(&data).unwrap().as_ref(), sorted.as_slice());
        assert_eq!(canonical(&sorted).unwrap().as_ref(), sorted.as_slice());
    }

    #[test]
    fn maps_inside_tags_are_sorted() {
        // tag 0x706E0001 (tuple) holding [{"b": 1, "a": 2}]
        let data = hex("da706e000181a2616201616102");
        let sorted = hex("da706e000181a2616102616201");
        assert_eq!(canonical(&data).unwrap().as_ref(), sorted.as_slice());
    }

    #[test]
    fn malformed_or_indefinite_bytes_have_no_canonical_form() {
        for data in [
            hex(""),
            hex("62ff"),
            hex("9f01ff"),
            hex("a161"),
            hex("0101"),
            hex("1c"),
        ] {
            assert!(canonical(&data).is_none(), "{data:?}");
        }
    }

    #[test]
    fn nesting_beyond_the_limit_has_no_canonical_form() {
        let mut deep = vec![0x81u8; MAX_DEPTH as usize + 1];
        deep.push(0x00);
        assert!(canonical(&deep).is_none());
        let ok = &deep[1..];
        assert!(matches!(canonical(ok), Some(Cow::Borrowed(_))));
    }
}

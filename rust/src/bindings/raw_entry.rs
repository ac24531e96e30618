//! Journal entries as Python sees them in tools and tests: raw payloads, entries built from
//! them, and decoded operations as tuples. Used by `bindings/store.rs`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::store::invalid;
use crate::entry::{decode_segment, encode_entry, put_uleb, Entry, SEGMENT_VERSION};

/// The payload bytes of an entry, as encoded in the journal.
pub(super) fn raw_payload(entry: &Entry) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_entry(
        &Entry {
            op: entry.op.clone(),
            call_site: None,
        },
        &mut buf,
    );
    // kind | flags | ULEB128 length | payload | crc32c
    let mut at = 2;
    let mut len = 0usize;
    let mut shift = 0;
    while let Some(&b) = buf.get(at) {
        at += 1;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    buf.get(at..at + len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Build an entry from its kind and raw payload by decoding it exactly as the journal would.
pub(super) fn entry_from_raw(
    kind: u8,
    payload: &[u8],
    call_site: Option<(String, u32, Option<String>)>,
    position: u64,
) -> PyResult<Entry> {
    // (file, line): the call site of flag 0x01; (file, line, function): flag 0x02, the first
    // code location of its one-entry segment.
    let flags = match &call_site {
        None => 0,
        Some((_, _, None)) => 1,
        Some((_, _, Some(_))) => 2,
    };
    let mut buf = vec![SEGMENT_VERSION, kind, flags];
    put_uleb(&mut buf, payload.len() as u64);
    buf.extend_from_slice(payload);
    let put_str = |buf: &mut Vec<u8>, s: &str| {
        put_uleb(buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    };
    match &call_site {
        None => {}
        Some((file, line, None)) => {
            put_str(&mut buf, file);
            put_uleb(&mut buf, u64::from(*line));
        }
        Some((file, line, Some(function))) => {
            put_uleb(&mut buf, 0);
            put_str(&mut buf, file);
            put_str(&mut buf, function);
            put_uleb(&mut buf, u64::from(*line));
        }
    }
    let crc = crc32c::crc32c(&buf[1..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    let mut entries = decode_segment(&buf, position)
        .map_err(|e| invalid(format!("entry {position} does not decode: {}", e.detail)))?;
    entries
        .pop()
        .ok_or_else(|| invalid(format!("entry {position} is empty")))
}

/// One journal operation as a Python tuple (see `journal_ops`).
pub(super) fn op_tuple<'py>(
    py: Python<'py>,
    op: &crate::entry::Op,
) -> PyResult<Bound<'py, PyTuple>> {
    use crate::entry::Op;
    match op {
        Op::Random(v) => ("random", crate::stream::u64_to_unit_f64(*v)).into_pyobject(py),
        Op::Uuid(u) => ("uuid", crate::ids::format(u)).into_pyobject(py),
        Op::Time(t) => ("utc_now", *t).into_pyobject(py),
        Op::SideEffect(e) => (
            "side_effect",
            &*e.name,
            PyBytes::new(py, &e.value),
            e.failed,
        )
            .into_pyobject(py),
        Op::Child(c) => (
            "execute_task",
            &*c.task_id,
            PyBytes::new(py, &c.child_id),
            PyBytes::new(py, &c.args_digest),
        )
            .into_pyobject(py),
        Op::DataRead(r) => (
            "get_data",
            &*r.key,
            r.value.as_ref().map(|v| PyBytes::new(py, v)),
        )
            .into_pyobject(py),
        Op::DataWrite(w) => {
            ("set_data", &*w.key, PyBytes::new(py, &w.value_digest)).into_pyobject(py)
        }
        Op::Patch(id) => ("patch", &**id).into_pyobject(py),
    }
}

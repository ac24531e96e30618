//! The fast path of the payload codec: exact scalars (int, float, str, bytes, bool, None) and
//! lists, tuples and dicts of them are encoded and decoded here, so hot operations never run
//! Python code. Anything else (sets, datetimes, big ints, subclasses, foreign tags) is handed
//! to the Python codec (`pynenc.codec`), which owns the full format and its strict checks.
//!
//! The bytes are exactly those `pynenc.codec.encode` writes (shortest ints and floats, map
//! pairs in insertion order), which a property test checks.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

static CODEC: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn codec(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    CODEC.get_or_try_init(py, || {
        let m = py.import("pynenc.codec")?;
        Ok((m.getattr("encode")?.unbind(), m.getattr("decode")?.unbind()))
    })
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// The shortest of half, single and double precision that holds `f` exactly (NaN as the
/// half-precision quiet NaN): byte for byte what `pynenc.codec` writes.
fn encode_float(out: &mut Vec<u8>, f: f64) {
    if let Some(h) = f16_exact(f) {
        out.push(0xf9);
        out.extend_from_slice(&h.to_be_bytes());
    } else if f64::from(f as f32) == f {
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&f.to_be_bytes());
    }
}

/// `f` as IEEE 754 half-precision bits, when that loses nothing.
fn f16_exact(f: f64) -> Option<u16> {
    if f.is_nan() {
        return Some(0x7e00);
    }
    let sign: u16 = if f.is_sign_negative() { 0x8000 } else { 0 };
    let a = f.abs();
    if a == 0.0 {
        return Some(sign);
    }
    if a.is_infinite() {
        return Some(sign | 0x7c00);
    }
    let bits = a.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let mantissa = bits & ((1u64 << 52) - 1);
    if (-14..=15).contains(&exp) && mantissa & ((1u64 << 42) - 1) == 0 {
        return Some(sign | (((exp + 15) as u16) << 10) | (mantissa >> 42) as u16);
    }
    // Subnormal halves: whole multiples of 2^-24 below 2^-14.
    let m = a * 16_777_216.0;
    if exp < -14 && m.fract() == 0.0 && m < 1024.0 {
        return Some(sign | m as u16);
    }
    None
}

/// Private CBOR tag of the codec for tuples (see `pynenc/codec.py`).
const TUPLE_TAG: u64 = 0x706E_0001;
/// Deepest nesting handled here; deeper values go to the Python codec.
const MAX_DEPTH: u32 = 32;

/// Append the CBOR of `value` (exact scalars, lists, tuples and dicts of them) to
/// `out`, exactly the bytes `pynenc.codec.encode` writes; None when the Python codec must
/// handle it (another type, a subclass, a big int, too deep, or over `limit` bytes).
fn encode_into(
    value: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: u32,
    limit: usize,
) -> Option<()> {
    // Exact type checks: a subclass (an IntEnum, a str subclass) goes to the Python codec.
    if value.is_none() {
        out.push(0xf6);
    } else if value.is_exact_instance_of::<PyBool>() {
        out.push(if value.is_truthy().ok()? { 0xf5 } else { 0xf4 });
    } else if value.is_exact_instance_of::<PyInt>() {
        let n: i64 = value.extract().ok()?;
        if n >= 0 {
            head(out, 0, n as u64);
        } else {
            head(out, 1, (-1 - n) as u64);
        }
    } else if value.is_exact_instance_of::<PyFloat>() {
        encode_float(out, value.extract().ok()?);
    } else if value.is_exact_instance_of::<PyString>() {
        let s = value.cast::<PyString>().ok()?.to_str().ok()?;
        head(out, 3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    } else if value.is_exact_instance_of::<PyBytes>() {
        let b = value.cast::<PyBytes>().ok()?.as_bytes();
        head(out, 2, b.len() as u64);
        out.extend_from_slice(b);
    } else if depth == 0 {
        return None;
    } else if value.is_exact_instance_of::<PyList>() {
        let list = value.cast::<PyList>().ok()?;
        head(out, 4, list.len() as u64);
        for item in list.iter() {
            encode_into(&item, out, depth - 1, limit)?;
        }
    } else if value.is_exact_instance_of::<PyTuple>() {
        let tuple = value.cast::<PyTuple>().ok()?;
        head(out, 6, TUPLE_TAG);
        head(out, 4, tuple.len() as u64);
        for item in tuple.iter() {
            encode_into(&item, out, depth - 1, limit)?;
        }
    } else if value.is_exact_instance_of::<PyDict>() {
        let dict = value.cast::<PyDict>().ok()?;
        // In insertion order: a dict reads back as it was built. Digests sort the keys
        // (`crate::canonical`).
        head(out, 5, dict.len() as u64);
        for (k, v) in dict.iter() {
            encode_into(&k, out, 0, limit)?;
            encode_into(&v, out, depth - 1, limit)?;
        }
    } else {
        return None;
    }
    (out.len() <= limit).then_some(())
}

/// The fast encoding of `value`, or None (see `encode_into`).
pub fn try_encode(value: &Bound<'_, PyAny>, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out, MAX_DEPTH, limit)?;
    Some(out)
}

/// Encode a payload: plain values here, anything else (and any error) through `pynenc.codec`.
pub fn encode(
    value: &Bound<'_, PyAny>,
    what: impl FnOnce() -> String,
    limit: usize,
) -> PyResult<Vec<u8>> {
    if let Some(bytes) = try_encode(value, limit) {
        return Ok(bytes);
    }
    let py = value.py();
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("what", what())?;
    kwargs.set_item("limit", limit)?;
    codec(py)?
        .0
        .bind(py)
        .call((value,), Some(&kwargs))?
        .extract()
}

fn read_arg(data: &[u8], info: u8) -> Option<(u64, usize)> {
    Some(match info {
        0..=23 => (u64::from(info), 1),
        24 => (u64::from(*data.get(1)?), 2),
        25 => (
            u64::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?)),
            3,
        ),
        26 => (
            u64::from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)),
            5,
        ),
        27 => (u64::from_be_bytes(data.get(1..9)?.try_into().ok()?), 9),
        _ => return None,
    })
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Decode one item at `*at` (scalars, arrays, maps with scalar keys, the tuple tag); None for
/// anything else, which the caller hands to the Python codec (and its strict checks).
fn decode_item<'py>(
    py: Python<'py>,
    data: &[u8],
    at: &mut usize,
    depth: u32,
) -> Option<Bound<'py, PyAny>> {
    let rest = data.get(*at..)?;
    let first = *rest.first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    if major == 7 {
        let (obj, used) = match info {
            20 => (PyBool::new(py, false).to_owned().into_any(), 1),
            21 => (PyBool::new(py, true).to_owned().into_any(), 1),
            22 => (py.None().into_bound(py), 1),
            25 => {
                let h = u16::from_be_bytes(rest.get(1..3)?.try_into().ok()?);
                (PyFloat::new(py, f16_to_f64(h)).into_any(), 3)
            }
            26 => {
                let f = f32::from_be_bytes(rest.get(1..5)?.try_into().ok()?);
                (PyFloat::new(py, f64::from(f)).into_any(), 5)
            }
            27 => {
                let f = f64::from_be_bytes(rest.get(1..9)?.try_into().ok()?);
                (PyFloat::new(py, f).into_any(), 9)
            }
            _ => return None,
        };
        *at += used;
        return Some(obj);
    }
    let (arg, used) = read_arg(rest, info)?;
    *at += used;
    match major {
        0 => Some(i64::try_from(arg).ok()?.into_pyobject(py).ok()?.into_any()),
        1 => Some(
            (-1 - i64::try_from(arg).ok()?)
                .into_pyobject(py)
                .ok()?
                .into_any(),
        ),
        2 | 3 => {
            let end = at.checked_add(usize::try_from(arg).ok()?)?;
            let body = data.get(*at..end)?;
            *at = end;
            Some(if major == 2 {
                PyBytes::new(py, body).into_any()
            } else {
                PyString::new(py, std::str::from_utf8(body).ok()?).into_any()
            })
        }
        4 if depth > 0 => {
            let items = decode_items(py, data, at, depth, arg)?;
            Some(PyList::new(py, items).ok()?.into_any())
        }
        5 if depth > 0 => {
            let dict = PyDict::new(py);
            for _ in 0..arg {
                let key = decode_item(py, data, at, 0)?;
                let value = decode_item(py, data, at, depth - 1)?;
                // Duplicate keys: the strict codec refuses them. A NaN key equals no other
                // key, so a second one would pass `contains`: the strict codec judges it.
                if dict.contains(&key).ok()? || is_nan(&key) {
                    return None;
                }
                dict.set_item(key, value).ok()?;
            }
            Some(dict.into_any())
        }
        6 if depth > 0 && arg == TUPLE_TAG => {
            let inner = data.get(*at)?;
            if inner >> 5 != 4 {
                return None;
            }
            let (n, used) = read_arg(&data[*at..], inner & 0x1f)?;
            *at += used;
            let items = decode_items(py, data, at, depth, n)?;
            Some(PyTuple::new(py, items).ok()?.into_any())
        }
        _ => None,
    }
}

/// Whether a decoded map key is a float NaN.
fn is_nan(key: &Bound<'_, PyAny>) -> bool {
    key.cast::<PyFloat>().is_ok_and(|f| f.value().is_nan())
}

fn decode_items<'py>(
    py: Python<'py>,
    data: &[u8],
    at: &mut usize,
    depth: u32,
    n: u64,
) -> Option<Vec<Bound<'py, PyAny>>> {
    // Each item takes at least one byte: a count beyond the data is malformed.
    if n > (data.len() - *at) as u64 {
        return None;
    }
    let mut items = Vec::with_capacity(n as usize);
    for _ in 0..n {
        items.push(decode_item(py, data, at, depth - 1)?);
    }
    Some(items)
}

/// The fast decoding of `data`, or None when the Python codec must decode it.
pub fn try_decode<'py>(py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyAny>> {
    let mut at = 0;
    let obj = decode_item(py, data, &mut at, MAX_DEPTH)?;
    (at == data.len()).then_some(obj)
}

/// Decode a payload: scalars here, anything else through `pynenc.codec`.
pub fn decode<'py>(
    py: Python<'py>,
    data: &[u8],
    what: impl FnOnce() -> String,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(obj) = try_decode(py, data) {
        return Ok(obj);
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("what", what())?;
    codec(py)?
        .1
        .bind(py)
        .call((PyBytes::new(py, data),), Some(&kwargs))
}

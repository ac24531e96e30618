//! CBOR for plain scalars (int, float, str, bytes, bool, None), done here so the hot data
//! operations never leave Rust. Anything else (containers, tags, big ints, subclasses) is
//! handed to the Python codec (`pynenc.codec`), which owns the full format.
//!
//! The bytes are ordinary CBOR, decodable by `pynenc.codec.decode` and any CBOR reader.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

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
/// half-precision quiet NaN): the canonical form, byte for byte what `pynenc.codec` writes.
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

/// CBOR bytes of an exact scalar, or None when the Python codec must handle it.
fn encode_scalar(value: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    let py = value.py();
    let ty = value.get_type();
    let mut out = Vec::new();
    if value.is_none() {
        out.push(0xf6);
    } else if ty.is(py.get_type::<PyBool>()) {
        out.push(if value.is_truthy().ok()? { 0xf5 } else { 0xf4 });
    } else if ty.is(py.get_type::<PyInt>()) {
        let n: i64 = value.extract().ok()?;
        if n >= 0 {
            head(&mut out, 0, n as u64);
        } else {
            head(&mut out, 1, (-1 - n) as u64);
        }
    } else if ty.is(py.get_type::<PyFloat>()) {
        encode_float(&mut out, value.extract().ok()?);
    } else if ty.is(py.get_type::<PyString>()) {
        let s = value.cast::<PyString>().ok()?.to_str().ok()?;
        head(&mut out, 3, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    } else if ty.is(py.get_type::<PyBytes>()) {
        let b = value.cast::<PyBytes>().ok()?.as_bytes();
        head(&mut out, 2, b.len() as u64);
        out.extend_from_slice(b);
    } else {
        return None;
    }
    Some(out)
}

/// Encode a payload: scalars here, anything else (and any error) through `pynenc.codec`.
pub fn encode(
    value: &Bound<'_, PyAny>,
    what: impl FnOnce() -> String,
    limit: usize,
) -> PyResult<Vec<u8>> {
    if let Some(bytes) = encode_scalar(value).filter(|b| b.len() <= limit) {
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

/// Decode a scalar payload here; None when it is anything else (the caller falls back).
fn decode_scalar<'py>(py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyAny>> {
    let first = *data.first()?;
    let (major, info) = (first >> 5, first & 0x1f);
    let (arg, used) = if major == 7 {
        (0, 1)
    } else {
        read_arg(data, info)?
    };
    let obj = match major {
        0 if used == data.len() => i64::try_from(arg).ok()?.into_pyobject(py).ok()?.into_any(),
        1 if used == data.len() => (-1 - i64::try_from(arg).ok()?)
            .into_pyobject(py)
            .ok()?
            .into_any(),
        2 | 3 => {
            let end = used.checked_add(usize::try_from(arg).ok()?)?;
            if end != data.len() {
                return None;
            }
            let body = &data[used..end];
            if major == 2 {
                PyBytes::new(py, body).into_any()
            } else {
                PyString::new(py, std::str::from_utf8(body).ok()?).into_any()
            }
        }
        7 => match (info, data.len()) {
            (20, 1) => PyBool::new(py, false).to_owned().into_any(),
            (21, 1) => PyBool::new(py, true).to_owned().into_any(),
            (22, 1) => py.None().into_bound(py),
            (25, 3) => {
                PyFloat::new(py, f16_to_f64(u16::from_be_bytes([data[1], data[2]]))).into_any()
            }
            (26, 5) => PyFloat::new(
                py,
                f64::from(f32::from_be_bytes(data[1..5].try_into().ok()?)),
            )
            .into_any(),
            (27, 9) => PyFloat::new(py, f64::from_be_bytes(data[1..9].try_into().ok()?)).into_any(),
            _ => return None,
        },
        _ => return None,
    };
    Some(obj)
}

/// Decode a payload: scalars here, anything else through `pynenc.codec`.
pub fn decode<'py>(
    py: Python<'py>,
    data: &[u8],
    what: impl FnOnce() -> String,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(obj) = decode_scalar(py, data) {
        return Ok(obj);
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("what", what())?;
    codec(py)?
        .1
        .bind(py)
        .call((PyBytes::new(py, data),), Some(&kwargs))
}

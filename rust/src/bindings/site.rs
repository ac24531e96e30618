//! Call sites: where in the user's code a workflow operation was made, read from the running
//! frame (`PyEval_GetFrame`, `PyFrame_GetCode`, `PyFrame_GetLineNumber` of the stable ABI, and
//! `PyFrame_GetLasti`, `PyFrame_GetBack` of CPython 3.11+).
//!
//! A code object's file and function are read once per thread and shared by every entry made
//! in it (`Arc<Code>`); an entry then costs a frame lookup, a line number and a small box.
//! Frames of this package's own modules (the `wf` API written in Python, the runner) and of the
//! standard `random` module (`wf.rng()` methods) are skipped: the site is the user's line.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::entry::{CallSite, Code};
use crate::error::Error;

/// A code object seen before: held (so its address is not reused), its location, and whether
/// it is one of the skipped frames.
struct Known {
    _code: Py<PyAny>,
    code: Arc<Code>,
    internal: bool,
    /// Line of each instruction offset (`f_lasti`) seen: computing a line scans the code's
    /// line table from its start (hundreds of ns in a long function), reading `f_lasti` not.
    lines: HashMap<i64, u32, foldhash::fast::RandomState>,
}

/// Most code objects remembered per thread; past it the table starts afresh.
const KEPT: usize = 4096;

/// Frames walked past at most looking for the user's code.
const MAX_SKIPPED: usize = 16;

// Not in the limited API, but in every CPython this extension loads in (3.11 and later, which
// its `abi3-py311` build requires): the offset of the frame's last instruction, and its caller
// (a new reference). `f_lasti` read as an attribute costs more than the rest of a capture.
extern "C" {
    fn PyFrame_GetLasti(frame: *mut ffi::PyFrameObject) -> std::ffi::c_int;
    fn PyFrame_GetBack(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyFrameObject;
}

thread_local! {
    static CODES: RefCell<HashMap<usize, Known, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

/// The directory of this package (with its trailing separator) and the file of `random`.
static SKIPPED: PyOnceLock<(String, String)> = PyOnceLock::new();

fn skipped(py: Python<'_>) -> Option<&(String, String)> {
    SKIPPED
        .get_or_try_init(py, || -> PyResult<_> {
            let os_path = py.import("os.path")?;
            let init = py.import("pynenc")?.getattr("__file__")?;
            let dir: String = os_path.call_method1("dirname", (init,))?.extract()?;
            let sep: String = py.import("os")?.getattr("sep")?.extract()?;
            let random: String = py.import("random")?.getattr("__file__")?.extract()?;
            Ok((format!("{dir}{sep}"), random))
        })
        .ok()
}

fn lookup(py: Python<'_>, code: &Bound<'_, PyAny>) -> Option<(Arc<Code>, bool)> {
    let key = code.as_ptr() as usize;
    if let Some(hit) = CODES.with(|c| {
        c.borrow()
            .get(&key)
            .map(|k| (Arc::clone(&k.code), k.internal))
    }) {
        return Some(hit);
    }
    let file: String = code.getattr("co_filename").ok()?.extract().ok()?;
    let function: String = code.getattr("co_name").ok()?.extract().ok()?;
    let internal =
        skipped(py).is_some_and(|(dir, random)| file.starts_with(dir) || file == *random);
    let shared = Arc::new(Code {
        file: file.into(),
        function: function.into(),
    });
    CODES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= KEPT {
            c.clear();
        }
        c.insert(
            key,
            Known {
                _code: code.clone().unbind(),
                code: Arc::clone(&shared),
                internal,
                lines: HashMap::default(),
            },
        );
    });
    Some((shared, internal))
}

/// The call site of the operation being made now: the innermost frame of the user's code.
pub fn here(py: Python<'_>) -> Option<CallSite> {
    // SAFETY: called with the GIL held (`py`); `PyEval_GetFrame` returns a borrowed frame of
    // this thread (or null), `PyFrame_GetCode` a new reference owned by `code`, and each frame
    // walked to is kept alive by `held` while it is used.
    unsafe {
        let mut frame = ffi::PyEval_GetFrame();
        let mut held: Option<Bound<'_, PyAny>> = None;
        for _ in 0..MAX_SKIPPED {
            if frame.is_null() {
                return None;
            }
            let code_key = Bound::from_owned_ptr(py, ffi::PyFrame_GetCode(frame).cast());
            let (code, internal) = lookup(py, &code_key)?;
            if !internal {
                let lasti = i64::from(PyFrame_GetLasti(frame));
                let key = code_key.as_ptr() as usize;
                let cached = CODES.with(|c| {
                    c.borrow()
                        .get(&key)
                        .and_then(|k| k.lines.get(&lasti).copied())
                });
                let line = match cached {
                    Some(line) => line,
                    None => {
                        let line = u32::try_from(ffi::PyFrame_GetLineNumber(frame)).unwrap_or(0);
                        CODES.with(|c| {
                            if let Some(k) = c.borrow_mut().get_mut(&key) {
                                k.lines.insert(lasti, line);
                            }
                        });
                        line
                    }
                };
                return Some(CallSite { code, line });
            }
            // A new reference (or null at the outermost frame), held while it is walked.
            frame = PyFrame_GetBack(frame);
            if frame.is_null() {
                return None;
            }
            held = Some(Bound::from_owned_ptr(py, frame.cast()));
        }
        drop(held);
        None
    }
}

/// `err` with the call site of what the code asks for now, when it is a divergence.
#[cold]
pub fn locate_request(err: Error) -> Error {
    match err {
        Error::NonDeterminism {
            workflow_id,
            invocation_id,
            position,
            recorded,
            mut requested,
        } => {
            if requested.kind != "return" && requested.site.is_none() {
                requested.site = Python::attach(here);
            }
            Error::NonDeterminism {
                workflow_id,
                invocation_id,
                position,
                recorded,
                requested,
            }
        }
        other => other,
    }
}

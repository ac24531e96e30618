//! The size of the map, kept safe across processes.
//!
//! With `MDB_WRITEMAP` (the store's `sync=false`), LMDB sets the length of `data.mdb` to the
//! map size each time it maps the file: `mdb_env_open` and `mdb_env_set_mapsize` call
//! `ftruncate(fd, mapsize)` (`mdb_env_map` in `mdb.c`). It only makes sure the map covers the
//! *committed* pages (`(mm_last_pg + 1) * psize`), not the file: a process that maps less
//! than another process already grew the file to cuts off the pages that process writes
//! through its larger map (its next write there is a SIGBUS), and a process without
//! `WRITEMAP` writing past the end of the file (`pwrite`) can see its fresh pages cut before
//! its commit lands. Three rules keep every process's pages inside the file:
//!
//! 1. Opening or resizing happens under an exclusive `flock` on the store directory
//!    (`DirLock`), and the new map is never smaller than the file is then: LMDB's
//!    `ftruncate` only ever grows the file, and the file is at least as long as every
//!    process's writable map.
//! 2. A process without `WRITEMAP` holds the same lock shared while its write transaction
//!    may extend the file, so no `ftruncate` runs between its `pwrite` and its commit.
//! 3. With `WRITEMAP` the file's blocks are reserved (`fallocate`) over the whole map before
//!    LMDB may write a page through it: a page of a sparse file that the filesystem cannot
//!    back would otherwise kill the process with SIGBUS when the disk is full; a reservation
//!    that fails is `StoreFull` instead, and the map is left as it was. The map is therefore
//!    the reservation: it starts small (`FIRST_WRITABLE_MAP`) and grows as data needs it.
//!
//! A process whose map is smaller than the data another process committed gets
//! `MDB_MAP_RESIZED` and adopts the file's size (`LmdbStore::resize`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The first map of a store opened with `WRITEMAP`, unless its file is already longer: the map
/// is reserved on disk, so it starts small and doubles as the data needs.
pub(crate) const FIRST_WRITABLE_MAP: usize = 1 << 20;

/// Largest single growth step of the map.
const MAX_STEP: usize = 1 << 30;

/// A `flock` on the store directory: held exclusively while the map is set, shared by a
/// process without `WRITEMAP` during a write transaction. Released when dropped.
pub(crate) struct DirLock<'f> {
    file: &'f File,
}

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        // Closing the descriptor would release it as well; an unlock cannot fail here.
        let _ = flock(self.file, libc::LOCK_UN);
    }
}

/// Open the store directory for locking (kept open by the environment's handle).
pub(crate) fn open_dir(dir: &Path) -> Result<File> {
    File::open(dir).map_err(|e| super::env::map_io(dir, "opening the store directory", e))
}

/// Take `dir_file`'s lock: exclusive to set the map, shared to write without `WRITEMAP`.
pub(crate) fn lock<'f>(dir: &Path, dir_file: &'f File, exclusive: bool) -> Result<DirLock<'f>> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    flock(dir_file, op).map_err(|e| super::env::map_io(dir, "locking the store directory", e))?;
    Ok(DirLock { file: dir_file })
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `flock` on a descriptor this process owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The length of `data.mdb` (0 when it does not exist yet).
pub(crate) fn file_len(dir: &Path) -> Result<u64> {
    match std::fs::metadata(dir.join("data.mdb")) {
        Ok(md) => Ok(md.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(super::env::map_io(dir, "inspecting the data file", e)),
    }
}

/// The map to open with: the requested size (for a writable map, at most
/// `FIRST_WRITABLE_MAP`), never less than the file.
pub(crate) fn first_size(requested: usize, file_len: u64, writable: bool) -> usize {
    let wanted = if writable {
        requested.min(FIRST_WRITABLE_MAP)
    } else {
        requested
    };
    round_to_page(wanted.max(usize::try_from(file_len).unwrap_or(usize::MAX)))
}

/// The map after a full one of `current` bytes: doubled, by at most `MAX_STEP`.
pub(crate) fn grown(current: usize) -> usize {
    round_to_page(current.saturating_add(current.clamp(1, MAX_STEP)))
}

/// Round up to a multiple of every page size in use (LMDB's and the OS's).
pub(crate) fn round_to_page(size: usize) -> usize {
    const PAGE: usize = 64 * 1024;
    size.max(PAGE).div_ceil(PAGE).saturating_mul(PAGE)
}

/// Reserve the blocks of `data.mdb` up to `len` bytes (extending it if shorter), so that no
/// page written through a writable map lacks the space behind it. A full filesystem is
/// `StoreFull`, naming the bytes missing. Filesystems that cannot reserve space
/// (`EOPNOTSUPP`) are left as they are: there a full disk can still be a SIGBUS (see
/// `docs/operations.md`).
pub(crate) fn reserve(dir: &Path, len: usize, during: &'static str) -> Result<()> {
    let data = dir.join("data.mdb");
    let file = File::options()
        .write(true)
        .open(&data)
        .map_err(|e| super::env::map_io(dir, during, e))?;
    let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
    loop {
        match allocate(&file, len) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
            Err(e) if is_full(&e) => {
                let allocated = file.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
                let needed = u64::try_from(len).unwrap_or(0).saturating_sub(allocated);
                return Err(full(dir, during, needed));
            }
            Err(e) => return Err(super::env::map_io(dir, during, e)),
        }
    }
}

#[cfg(target_os = "linux")]
fn allocate(file: &File, len: libc::off_t) -> io::Result<()> {
    // SAFETY: `fallocate` on a descriptor this process owns; mode 0 only allocates blocks
    // (and extends the length), leaving existing bytes as they are.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(_file: &File, _len: libc::off_t) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// Is this the filesystem being full (or the user's quota spent)?
pub(crate) fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// `StoreFull` for the store at `dir`, needing `needed` more bytes.
pub(crate) fn full(dir: &Path, during: &'static str, needed: u64) -> Error {
    Error::StoreFull {
        path: dir.to_path_buf(),
        during,
        needed: needed.max(1),
        available: available(dir),
    }
}

/// Bytes free for this process on the filesystem of `dir` (0 when it cannot be asked).
fn available(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `statvfs` fills the struct it is given from a NUL-terminated path.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: `statvfs` returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // narrower than u64 on some targets
    u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize))
}

/// The identity (device, inode) of `lock.mdb` in the store directory open as `dir_file`, or
/// `None` when it does not exist: one `fstatat` relative to the directory (no walk of the
/// store's path), never an `open`, since closing any descriptor of `lock.mdb` would drop the
/// `fcntl` locks LMDB holds on it.
pub(crate) fn lock_identity(dir_file: &File) -> io::Result<Option<(u64, u64)>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fstatat` fills the struct it is given, for a NUL-terminated name relative to
    // a directory descriptor this process owns.
    let rc = unsafe {
        libc::fstatat(
            dir_file.as_raw_fd(),
            c"lock.mdb".as_ptr(),
            st.as_mut_ptr(),
            0,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: `fstatat` returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // narrower than u64 on some targets
    Ok(Some((u64::from(st.st_dev), u64::from(st.st_ino))))
}

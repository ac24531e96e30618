//! Opening the LMDB environment: the one `unsafe` open of the store, its databases, the
//! format-version check (migrating older stores), and the translation of LMDB failures into
//! `Error` variants.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Env, EnvFlags, EnvOpenOptions, MdbError, WithoutTls};

use super::keys::META_FORMAT_VERSION;
use super::map;
use super::migrate;
use super::tables::Dbs;
use super::tables::MAX_KEY_LEN;
use super::StoreOptions;
use crate::error::{Error, Result};
use crate::store::Migration;

/// On-disk format version of the store (see `docs/journal-format.md`): 5 may hold journal
/// entries of kind 9 (patch markers) and is otherwise format 4; 4 ends every row's
/// value with a CRC-32C over its key and value; 3 had no row checksums and may hold journal
/// entries of kind 8 (a side effect that raised); 2 had the layout of 3 without them; 1 kept
/// each table in a named database. Older versions are migrated on open.
pub const FORMAT_VERSION: u32 = 5;

/// Named databases: `meta`, and room for the seven of a version-1 store being migrated.
const MAX_DBS: u32 = 9;

/// An open environment, tagged with the process that opened it.
pub(crate) struct Handle {
    pub env: Env<WithoutTls>,
    pub dbs: Dbs,
    pub pid: u32,
    /// Set when this open migrated the store from an older format.
    pub migrated: Option<Migration>,
    /// The store directory, open for its `flock` (`map.rs`).
    pub dir_file: File,
    /// The (device, inode) of `lock.mdb` when the environment was opened: compared before
    /// every write transaction (`check_lock`).
    lock_id: Option<(u64, u64)>,
}

/// Open (creating if needed) the environment in the existing directory `dir`.
pub(crate) fn open(dir: &Path, options: &StoreOptions) -> Result<Handle> {
    let dir_file = map::open_dir(dir)?;
    let env = {
        // No other process sets its map meanwhile (`map.rs`), so the length read here is
        // still the file's when LMDB maps it.
        let _lock = map::lock(dir, &dir_file, true)?;
        let (file_len, readable) = check_data_file(dir)?;
        let writable = !options.sync;
        let size = map::first_size(options.map_size, file_len, writable);
        if writable && readable {
            map::reserve(dir, size, "opening the environment")?;
        }
        let env = open_env(dir, options, size)?;
        if writable && !readable {
            // A new file (or one LMDB judged itself): LMDB wrote its meta pages and sized it;
            // nothing went through the map yet.
            map::reserve(dir, size, "opening the environment")?;
        }
        env
    };
    let lock_id =
        map::lock_identity(&dir_file).map_err(|e| map_io(dir, "inspecting the lock file", e))?;
    // Stale slots of readers that died mid-transaction (e.g. SIGKILL) would otherwise
    // accumulate until the table is full.
    env.clear_stale_readers()
        .map_err(|e| map_err(dir, "clearing stale readers", e))?;
    check_not_truncated(dir, &env)?;
    let started = std::time::Instant::now();
    let extending = options.sync.then_some(&dir_file);
    let (dbs, migrated_from) = create_dbs(dir, &env, extending)?;
    Ok(Handle {
        env,
        dbs,
        pid: std::process::id(),
        migrated: migrated_from.map(|from| Migration {
            to: FORMAT_VERSION,
            from,
            took: started.elapsed(),
        }),
        dir_file,
        lock_id,
    })
}

/// Refuse to write when `lock.mdb` is no longer the file the environment opened: LMDB's
/// writer lock and reader table live in it, so a process that opens the store after it was
/// deleted or replaced takes another lock, and two writers would share the pages.
pub(crate) fn check_lock(dir: &Path, h: &Handle) -> Result<()> {
    match map::lock_identity(&h.dir_file) {
        Ok(now) if now == h.lock_id => Ok(()),
        Ok(None) => Err(Error::StoreLock {
            path: dir.to_path_buf(),
            what: "deleted",
        }),
        Ok(Some(_)) => Err(Error::StoreLock {
            path: dir.to_path_buf(),
            what: "replaced",
        }),
        Err(e) => Err(map_io(dir, "inspecting the lock file", e)),
    }
}

/// Open the LMDB environment of `dir` with a map of `map_size` bytes, at least the file's
/// length (`map::first_size`).
fn open_env(dir: &Path, options: &StoreOptions, map_size: usize) -> Result<Env<WithoutTls>> {
    let mut builder = EnvOpenOptions::new().read_txn_without_tls();
    builder
        .map_size(map_size)
        .max_dbs(MAX_DBS)
        .max_readers(options.max_readers.max(1));
    // SAFETY: NO_SYNC only drops the fsync at commit: a process crash loses nothing (the OS
    // keeps the written pages); a power loss or OS crash may lose the last commits or corrupt
    // the store (LMDB's documented risk). The caller chose it, and the documentation says so.
    // Without fsync, WRITE_MAP lets a commit write its pages straight into the shared map
    // instead of one `pwrite` per page (about twice the steps/s): the pages are the same
    // page-cache pages every process reads, so a process crash still loses nothing.
    // - The file's length becomes the map size; `check_data_file` has already compared the
    //   length with the pages the meta page claims, before LMDB could extend a truncated file.
    // - The map is at least the file's length, read under the directory lock that every
    //   process setting its map takes (`map.rs`), so opening never shrinks the file, and its
    //   blocks are reserved before a page is written through the map.
    // - The store uses no nested transactions (WRITE_MAP does not support them).
    // - Wild pointer writes could reach the map: the store's writes are LMDB's own, from Rust.
    if !options.sync {
        unsafe { builder.flags(EnvFlags::NO_SYNC | EnvFlags::WRITE_MAP) };
    }
    // SAFETY: LMDB maps `data.mdb` into memory; the map must not be modified behind LMDB's back.
    // - Every process that writes goes through LMDB's own lock file (`lock.mdb`), so concurrent
    //   writers in other processes are serialised by LMDB.
    // - Within this process the environment is opened at most once per canonical path: the
    //   store registry (`registry.rs`) hands out one shared `LmdbStore`, and heed itself refuses a
    //   second open of the same path.
    // - `check_data_file` runs first and `check_not_truncated` runs before any page is read
    //   through the map, so a file shorter than its meta page claims fails cleanly instead of
    //   faulting (SIGBUS) on a page beyond the end of the file.
    // - Read transactions do not use thread-local slots (`read_txn_without_tls`), so a slot is
    //   tied to a transaction object and freed with it.
    unsafe { builder.open(dir) }.map_err(|e| map_err(dir, "opening the environment", e))
}

/// The databases, and the format the store was migrated from, if it was. Without a writable
/// map the transaction holds `dir_file`'s lock shared, as every write does (`map.rs`).
fn create_dbs(
    dir: &Path,
    env: &Env<WithoutTls>,
    dir_file: Option<&File>,
) -> Result<(Dbs, Option<u32>)> {
    let wtxn = env
        .write_txn()
        .map_err(|e| map_err(dir, "creating databases", e))?;
    let _extending = dir_file.map(|f| map::lock(dir, f, false)).transpose()?;
    let mut found_version = None;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        let meta = opener.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
        let main = opener.create_database::<Bytes, Bytes>(wtxn, None)?;
        let found = match meta.get(wtxn, META_FORMAT_VERSION)? {
            None => None,
            Some(raw) => match <[u8; 4]>::try_from(raw).map(u32::from_be_bytes) {
                Ok(found) => Some(found),
                Err(_) => {
                    return Ok(CommitOrAbort::Abort(Error::CorruptStore {
                        path: dir.to_path_buf(),
                        detail: format!(
                            "format version record has {} bytes, expected 4",
                            raw.len()
                        ),
                    }))
                }
            },
        };
        found_version = found;
        match found {
            Some(found) if found > FORMAT_VERSION => {
                return Ok(CommitOrAbort::Abort(Error::FormatVersion {
                    path: dir.to_path_buf(),
                    found,
                    supported: FORMAT_VERSION,
                }))
            }
            Some(FORMAT_VERSION) | None => {}
            Some(1) => {
                migrate::from_named_databases(opener, wtxn, main)?;
                migrate::add_row_checksums(wtxn, main)?;
            }
            // Formats 2 and 3 have this layout without row checksums (3 raised the version so
            // that builds that cannot read entries of kind 8 refuse the store).
            Some(2 | 3) => migrate::add_row_checksums(wtxn, main)?,
            // Format 5 only adds entries of kind 9 (patch markers): a format-4 store reads as
            // it is, and the raised version keeps builds that cannot read them out.
            Some(4) => {}
            Some(other) => {
                return Ok(CommitOrAbort::Abort(Error::CorruptStore {
                    path: dir.to_path_buf(),
                    detail: format!("format version record says {other}, which no build wrote"),
                }))
            }
        }
        if found != Some(FORMAT_VERSION) {
            meta.put(wtxn, META_FORMAT_VERSION, &FORMAT_VERSION.to_be_bytes())?;
        }
        Ok::<_, heed::Error>(CommitOrAbort::Commit((meta, main)))
    });
    match created.map_err(|e| map_err(dir, "creating databases", e))? {
        CommitOrAbort::Abort(e) => Err(e),
        CommitOrAbort::Commit((meta, main)) => {
            let migrated_from = found_version.filter(|v| *v != FORMAT_VERSION);
            Ok((Dbs::new(meta, main), migrated_from))
        }
    }
}

/// Refuse a data file LMDB would misread, before LMDB opens it: an empty file would silently be
/// initialised as a new store, a directory in its place cannot be mapped, and a file shorter
/// than the pages its meta page claims would be extended with zeros (with `WRITE_MAP`) or
/// fault (SIGBUS) when a missing page is read. Returns the file's length (0 when absent), and
/// whether it starts with meta pages this check could read.
fn check_data_file(dir: &Path) -> Result<(u64, bool)> {
    let data = dir.join("data.mdb");
    let len = match fs::symlink_metadata(&data) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, false)),
        Err(e) => {
            return Err(access(
                dir,
                format!("cannot inspect {}: {e}", data.display()),
            ))
        }
        Ok(md) if !md.is_file() => {
            return Err(access(
                dir,
                format!("{} is not a regular file", data.display()),
            ))
        }
        Ok(md) if md.len() == 0 => {
            return Err(Error::CorruptStore {
                path: dir.to_path_buf(),
                detail: "data.mdb is empty (truncated)".into(),
            })
        }
        Ok(md) => md.len(),
    };
    let claimed = claimed_len(&data)
        .map_err(|e| access(dir, format!("cannot read {}: {e}", data.display())))?;
    match claimed {
        Some(needed) if len < needed => Err(truncated(dir, len, needed)),
        _ => Ok((len, claimed.is_some())),
    }
}

/// The bytes the newest meta page of `data` says are in use, or `None` when the file does not
/// start with two LMDB meta pages (LMDB's own open then reports what is wrong).
///
/// LMDB's meta page (x86-64 and other 64-bit targets): a 16-byte page header, then `mm_magic`
/// (u32), `mm_version` (u32), `mm_address` (8), `mm_mapsize` (8), two 48-byte database
/// records whose first (`md_pad`, u32) holds the page size, `mm_last_pg` (u64) and `mm_txnid`
/// (u64), all native-endian. Page 1 holds the second meta page; the one with the larger
/// `mm_txnid` is current.
pub(crate) fn claimed_len(data: &Path) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    const MAGIC: u32 = 0xBEEF_C0DE;
    const MAGIC_AT: usize = 16;
    const PSIZE_AT: usize = 40;
    const LAST_PG_AT: usize = 136;
    const TXNID_AT: usize = 144;
    const META_LEN: usize = 152;
    if cfg!(not(target_pointer_width = "64")) {
        return Ok(None); // another layout: the check after opening still applies
    }
    let file = fs::File::open(data)?;
    let read_meta = |offset: u64| -> io::Result<Option<(u32, u64, u64)>> {
        let mut buf = [0u8; META_LEN];
        match file.read_exact_at(&mut buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        let u32_at = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        Ok((u32_at(MAGIC_AT) == MAGIC)
            .then(|| (u32_at(PSIZE_AT), u64_at(LAST_PG_AT), u64_at(TXNID_AT))))
    };
    let Some((psize, last0, txn0)) = read_meta(0)? else {
        return Ok(None);
    };
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Ok(None);
    }
    let last_pg = match read_meta(u64::from(psize))? {
        Some((_, last1, txn1)) if txn1 > txn0 => last1,
        Some(_) => last0,
        None => return Ok(None),
    };
    Ok(Some(
        last_pg.saturating_add(1).saturating_mul(u64::from(psize)),
    ))
}

fn truncated(dir: &Path, len: u64, needed: u64) -> Error {
    Error::CorruptStore {
        path: dir.to_path_buf(),
        detail: format!("data.mdb has {len} bytes but its pages need {needed} (truncated)"),
    }
}

/// Refuse a data file shorter than the pages its meta page says are in use: reading such a
/// page through the memory map would kill the process with SIGBUS.
fn check_not_truncated(dir: &Path, env: &Env<WithoutTls>) -> Result<()> {
    let info = env.info();
    let page_size = env.unnamed_database_stat().page_size as u64;
    let needed = (info.last_page_number as u64 + 1).saturating_mul(page_size);
    let len = env
        .real_disk_size()
        .map_err(|e| map_err(dir, "checking the data file", e))?;
    if len < needed {
        return Err(truncated(dir, len, needed));
    }
    Ok(())
}

fn access(dir: &Path, detail: String) -> Error {
    Error::StoreAccess {
        path: dir.to_path_buf(),
        detail,
    }
}

/// Classify an OS error met while opening or writing the store at `dir`.
pub(crate) fn map_io(dir: &Path, during: &'static str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EROFS) => Error::ReadOnly {
            path: dir.to_path_buf(),
        },
        // At least a page; a commit replaces it with its own size (`LmdbStore::flush`).
        _ if map::is_full(&e) => map::full(dir, during, 4096),
        Some(libc::EACCES | libc::EPERM | libc::ENOTDIR | libc::EISDIR | libc::ENOENT)
            if during.starts_with("open") || during.starts_with("creat") =>
        {
            access(dir, format!("{during}: {e}"))
        }
        _ => Error::Io {
            path: dir.to_path_buf(),
            during,
            source: std::sync::Arc::new(e),
        },
    }
}

/// Translate a heed/LMDB failure into the core error.
pub(crate) fn map_err(dir: &Path, during: &'static str, e: heed::Error) -> Error {
    let lmdb = |detail: String| Error::Lmdb {
        path: dir.to_path_buf(),
        during,
        detail,
    };
    match e {
        heed::Error::Io(e) => map_io(dir, during, e),
        heed::Error::Mdb(
            m @ (MdbError::Invalid
            | MdbError::Corrupted
            | MdbError::PageNotFound
            | MdbError::VersionMismatch
            | MdbError::Incompatible),
        ) => Error::CorruptStore {
            path: dir.to_path_buf(),
            detail: m.to_string(),
        },
        heed::Error::Mdb(MdbError::BadValSize) => Error::InvalidArgument(format!(
            "store at {}: a key is empty or longer than {MAX_KEY_LEN} bytes",
            dir.display()
        )),
        heed::Error::Mdb(m) => lmdb(m.to_string()),
        heed::Error::EnvAlreadyOpened => access(
            dir,
            "the LMDB environment is already open in this process outside the store".into(),
        ),
        other => lmdb(other.to_string()),
    }
}

/// Is this failure the map being too small (ours or another process's growth)?
pub(crate) enum MapEvent {
    Full,
    Resized,
}

pub(crate) fn map_event(e: &heed::Error) -> Option<MapEvent> {
    match e {
        heed::Error::Mdb(MdbError::MapFull) => Some(MapEvent::Full),
        heed::Error::Mdb(MdbError::MapResized) => Some(MapEvent::Resized),
        _ => None,
    }
}

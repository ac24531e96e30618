//! Bounds of the memory map, checked before the store reads a value LMDB hands it.
//!
//! LMDB takes a value's length from its node on the page. A damaged length (one flipped bit
//! of the node header) makes the value run past its page, and past the end of the file: the
//! store's checksum would then read unmapped memory and kill the process (SIGBUS/SIGSEGV).
//! So before a value's bytes are read:
//!
//! - a value that starts inside a page must end inside that page (only values on overflow
//!   pages, which start right after a page header, span pages);
//! - any value must end inside the data file's part of the map.
//!
//! The map's place is read from `/proc/self/maps` (the mapping holding the value, a file
//! named `data.mdb`) the first time a value lies outside the known map, so a map moved by a
//! resize is found again. A value outside every `data.mdb` mapping (a page of this process's
//! own write transaction, in the heap) is not checked. Where `/proc` is missing, only the
//! in-page check applies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Size of LMDB's page header: overflow values start this far into their first page.
const PAGE_HEADER: usize = 16;
/// Least time between two reads of `/proc/self/maps` for values outside the known map.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(crate) struct MapBounds {
    /// Start of the map of `data.mdb`, its end, and the end of the file's bytes in it.
    base: AtomicUsize,
    map_end: AtomicUsize,
    valid_end: AtomicUsize,
    refreshed: Mutex<Option<(Instant, String)>>,
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf only reads a system constant.
            let size =
                usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
            PAGE.store(size.max(512), Ordering::Relaxed);
            size.max(512)
        }
        size => size,
    }
}

impl MapBounds {
    /// Why `value` (a slice LMDB returned) cannot be read safely, if it cannot.
    pub fn check(&self, value: &[u8]) -> Result<(), String> {
        let start = value.as_ptr() as usize;
        let Some(end) = start.checked_add(value.len()) else {
            return Err(format!(
                "its length {} runs past the address space",
                value.len()
            ));
        };
        if !self.contains(start) {
            self.refresh(start, false);
            if !self.contains(start) {
                return Ok(()); // not in the data file's map: a page of this process's own
            }
        }
        let psize = page_size();
        let in_page = (start - self.base.load(Ordering::Acquire)) % psize;
        if in_page != PAGE_HEADER && in_page + value.len() > psize {
            return Err(format!(
                "its length {} runs past the end of its page (damaged node header)",
                value.len()
            ));
        }
        if end > self.valid_end.load(Ordering::Acquire) {
            self.refresh(start, true); // the file may have grown since
            if end > self.valid_end.load(Ordering::Acquire) {
                return Err(format!(
                    "its length {} runs past the end of data.mdb (damaged node header)",
                    value.len()
                ));
            }
        }
        Ok(())
    }

    fn contains(&self, at: usize) -> bool {
        let base = self.base.load(Ordering::Acquire);
        base != 0 && at >= base && at < self.map_end.load(Ordering::Acquire)
    }

    /// Find the `data.mdb` mapping holding `at` and the file's length.
    fn refresh(&self, at: usize, force: bool) {
        let mut last = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
        // Until the map was found once, every miss looks again (the first values read find
        // it); after that, values outside it (this process's own new pages) look at most
        // every REFRESH_EVERY, for a map a resize moved.
        let known = self.base.load(Ordering::Acquire) != 0;
        let recent = last
            .as_ref()
            .is_some_and(|(when, _)| when.elapsed() < REFRESH_EVERY);
        if !force && known && recent {
            return;
        }
        let path = match (force, last.as_ref()) {
            (true, Some((_, path))) if self.contains(at) => Some(path.clone()),
            _ => find_mapping(at).map(|(base, end, path)| {
                self.base.store(base, Ordering::Release);
                self.map_end.store(end, Ordering::Release);
                path
            }),
        };
        let Some(path) = path else {
            // A value outside every mapping (a page of this process's own write transaction)
            // says nothing about the file: the path found before stays, only the time moves.
            let known_path = last.take().map(|(_, path)| path).unwrap_or_default();
            *last = Some((Instant::now(), known_path));
            return;
        };
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let base = self.base.load(Ordering::Acquire);
        let valid = base.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        self.valid_end.store(
            valid.min(self.map_end.load(Ordering::Acquire)),
            Ordering::Release,
        );
        *last = Some((Instant::now(), path));
    }
}

/// The mapping of a file named `data.mdb` holding address `at`: (start of the file's map,
/// end of the mapping, the file's path).
fn find_mapping(at: usize) -> Option<(usize, usize, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (range, _perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
        let (_dev, _inode) = (fields.next()?, fields.next()?);
        let path = fields.collect::<Vec<_>>().join(" ");
        let (lo, hi) = range.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        let offset = usize::from_str_radix(offset, 16).ok()?;
        if !path.ends_with("/data.mdb") || !(lo..hi).contains(&at) {
            return None;
        }
        Some((lo.checked_sub(offset)?, hi, path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_outside_the_map_is_not_checked() {
        let bounds = MapBounds::default();
        let heap = vec![0u8; 3 * page_size()];
        assert!(bounds.check(&heap[100..2 * page_size()]).is_ok());
    }

    /// A file named `data.mdb` of `pages` pages, mapped (shared, read-only) over `map_pages`.
    fn mapped_file(
        dir: &std::path::Path,
        pages: usize,
        map_pages: usize,
    ) -> (std::fs::File, *mut u8) {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join("data.mdb"))
            .unwrap();
        file.set_len((pages * page_size()) as u64).unwrap();
        // SAFETY: a fresh shared read-only mapping of a file this test owns; unmapped never
        // (the test process ends).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_pages * page_size(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED);
        (file, map.cast())
    }

    #[test]
    fn the_file_grown_by_another_process_is_seen_after_a_value_off_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let psize = page_size();
        let (file, map) = mapped_file(dir.path(), 2, 8);
        // SAFETY: inside the mapping, within the file's 2 pages.
        let first = unsafe { std::slice::from_raw_parts(map.add(PAGE_HEADER), 8) };
        let bounds = MapBounds::default();
        assert!(bounds.check(first).is_ok());
        // A value of this process's own (off the map), looked up once the refresh is due.
        std::thread::sleep(REFRESH_EVERY + Duration::from_millis(10));
        let own = [0u8; 64];
        assert!(bounds.check(&own[..8]).is_ok());
        // Another process grows the file; a value in the new pages is readable.
        file.set_len((4 * psize) as u64).unwrap();
        // SAFETY: inside the mapping, within the file's 4 pages now.
        let grown = unsafe { std::slice::from_raw_parts(map.add(3 * psize + PAGE_HEADER), 8) };
        assert_eq!(bounds.check(grown), Ok(()));
    }
}

//! A walk of every page of a store's data file, read with `pread`, never through LMDB's map:
//! damage that would send LMDB's cursor code off its pages (a wrong page number, node offset
//! or length) is reported here as a finding instead of being followed. `pynenc verify` runs
//! it; the checks are listed in `docs/operations.md`.
//!
//! Layout read (LMDB `mdb.master`, 64-bit, `docs/journal-format.md` §1): a page starts with a
//! 16-byte header `pgno: u64, pad: u16, flags: u16, lower: u16, upper: u16` (an overflow page
//! has `pages: u32` in place of lower/upper), then `lower - 16` bytes of u16 node offsets.
//! A node is `lo: u16, hi: u16, flags: u16, ksize: u16, key, data`; on a branch page
//! `lo | hi << 16 | flags << 32` is the child's page number, on a leaf page `lo | hi << 16`
//! is the data's length (the data is an overflow page number when `flags` has `F_BIGDATA`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::verify::Finding;

const HEADER: usize = 16;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
const MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
const NO_PAGE: u64 = u64::MAX;
/// Findings kept at most: a walk of a badly damaged file stays bounded.
const MAX_FINDINGS: usize = 1000;

/// One database record (`MDB_db`, 48 bytes): page counts, entries and root.
#[derive(Clone, Copy, Debug, Default)]
struct DbRecord {
    depth: u16,
    branch_pages: u64,
    leaf_pages: u64,
    overflow_pages: u64,
    entries: u64,
    root: u64,
}

impl DbRecord {
    fn parse(b: &[u8]) -> DbRecord {
        DbRecord {
            depth: u16_at(b, 6),
            branch_pages: u64_at(b, 8),
            leaf_pages: u64_at(b, 16),
            overflow_pages: u64_at(b, 24),
            entries: u64_at(b, 32),
            root: u64_at(b, 40),
        }
    }
}

struct Meta {
    psize: usize,
    free: DbRecord,
    main: DbRecord,
    last_pg: u64,
    txnid: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What one walk counted in a tree, compared with its `DbRecord` at the end.
#[derive(Default)]
struct Counted {
    branch: u64,
    leaf: u64,
    overflow: u64,
    entries: u64,
}

/// The leaf rows of the main tree, given to the caller as they are found.
pub(crate) type OnRow<'a> = dyn FnMut(&[u8], &[u8], &mut Vec<Finding>) + 'a;

struct Walk<'a> {
    file: File,
    file_len: u64,
    psize: usize,
    last_pg: u64,
    /// Page number → the tree that uses it (or "free list" for listed free pages).
    owner: HashMap<u64, &'static str>,
    free: Vec<u64>,
    findings: Vec<Finding>,
    on_row: &'a mut OnRow<'a>,
}

/// Walk every page of the data file `data`; `on_row` sees every row of the main database
/// (tagged key, stored value). Returns what is wrong, empty for an intact file.
pub(crate) fn walk(data: &Path, on_row: &mut OnRow<'_>) -> Vec<Finding> {
    walk_owners(data, on_row).0
}

/// `walk`, and which tree uses each page (the free list for free pages).
pub(crate) fn walk_owners(
    data: &Path,
    on_row: &mut OnRow<'_>,
) -> (Vec<Finding>, HashMap<u64, &'static str>) {
    let page = |detail: String| Finding::new("pages", "data file", detail);
    if cfg!(not(all(
        target_pointer_width = "64",
        target_endian = "little"
    ))) {
        let only = "the page walk reads 64-bit little-endian LMDB files only";
        return (vec![page(only.into())], HashMap::new());
    }
    let file = match File::open(data) {
        Ok(f) => f,
        Err(e) => {
            let detail = format!("cannot open {}: {e}", data.display());
            return (vec![page(detail)], HashMap::new());
        }
    };
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (meta, mut findings) = match read_metas(&file, file_len) {
        Ok(found) => found,
        Err(detail) => return (vec![page(detail)], HashMap::new()),
    };
    let needed = (meta.last_pg + 1).saturating_mul(meta.psize as u64);
    if file_len < needed {
        findings.push(page(format!(
            "data.mdb has {file_len} bytes but its pages need {needed} (truncated)"
        )));
        return (findings, HashMap::new());
    }
    let mut walk = Walk {
        file,
        file_len,
        psize: meta.psize,
        last_pg: meta.last_pg,
        owner: HashMap::new(),
        free: Vec::new(),
        findings,
        on_row,
    };
    walk.tree("free list", meta.free, true);
    walk.tree("main database", meta.main, false);
    walk.reachability();
    (walk.findings, walk.owner)
}

/// The id of the last committed transaction of the data file `data`, if its meta pages read:
/// a walk that saw it change read pages of two snapshots and is repeated.
pub(crate) fn snapshot_id(data: &Path) -> Option<u64> {
    let file = File::open(data).ok()?;
    let len = file.metadata().ok()?.len();
    read_metas(&file, len).ok().map(|(meta, _)| meta.txnid)
}

/// The current meta page, and findings about either meta page.
fn read_metas(file: &File, file_len: u64) -> Result<(Meta, Vec<Finding>), String> {
    let mut head = [0u8; 152];
    file.read_exact_at(&mut head, 0)
        .map_err(|e| format!("cannot read meta page 0: {e}"))?;
    let psize = u32_at(&head, 40) as usize;
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Err(format!(
            "meta page 0 gives page size {psize}, not a power of two in 512..=65536"
        ));
    }
    let mut metas = Vec::new();
    let mut findings = Vec::new();
    for n in 0..2u64 {
        let mut b = [0u8; 152];
        if n * psize as u64 + 152 > file_len {
            return Err(format!(
                "data.mdb has {file_len} bytes, too short for two meta pages"
            ));
        }
        file.read_exact_at(&mut b, n * psize as u64)
            .map_err(|e| format!("cannot read meta page {n}: {e}"))?;
        let wrong = if u64_at(&b, 0) != n {
            Some(format!("header names page {}", u64_at(&b, 0)))
        } else if u16_at(&b, 10) & P_META == 0 {
            Some(format!("flags {:#06x} lack the meta flag", u16_at(&b, 10)))
        } else if u32_at(&b, 16) != MAGIC || u32_at(&b, 20) != DATA_VERSION {
            Some("magic number or data version is wrong".into())
        } else if u32_at(&b, 40) as usize != psize {
            Some(format!(
                "page size {} differs from meta page 0's",
                u32_at(&b, 40)
            ))
        } else {
            None
        };
        if let Some(wrong) = wrong {
            findings.push(Finding::new("pages", &format!("meta page {n}"), wrong));
            continue;
        }
        let meta = Meta {
            psize,
            free: DbRecord::parse(&b[40..88]),
            main: DbRecord::parse(&b[88..136]),
            last_pg: u64_at(&b, 136),
            txnid: u64_at(&b, 144),
        };
        // LMDB writes transaction t's meta to page t % 2, so the pages' ids alternate.
        if meta.txnid != 0 && meta.txnid % 2 != n {
            findings.push(Finding::new(
                "pages",
                &format!("meta page {n}"),
                format!("transaction id {} does not belong on this page", meta.txnid),
            ));
            continue;
        }
        metas.push(meta);
    }
    if let [a, b] = &metas[..] {
        if a.txnid.abs_diff(b.txnid) != 1 && (a.txnid, b.txnid) != (0, 0) {
            findings.push(Finding::new(
                "pages",
                "meta pages",
                format!(
                    "transaction ids {} and {} are not consecutive (one was damaged)",
                    a.txnid, b.txnid
                ),
            ));
        }
    }
    let current = metas
        .into_iter()
        .max_by_key(|m| m.txnid)
        .ok_or_else(|| "both meta pages are damaged".to_string())?;
    Ok((current, findings))
}

impl Walk<'_> {
    fn find(&mut self, key: String, detail: String) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(Finding::new("pages", &key, detail));
        }
    }

    fn read_page(&mut self, pgno: u64, buf: &mut [u8]) -> bool {
        let at = pgno.saturating_mul(self.psize as u64);
        if pgno < 2 || pgno > self.last_pg || at + buf.len() as u64 > self.file_len {
            return false;
        }
        match self.file.read_exact_at(buf, at) {
            Ok(()) => true,
            Err(e) => {
                self.find(format!("page {pgno}"), format!("cannot be read: {e}"));
                false
            }
        }
    }

    /// Mark `pgno` as used by `tree`; false when another use already claimed it.
    fn claim(&mut self, pgno: u64, tree: &'static str) -> bool {
        if let Some(other) = self.owner.insert(pgno, tree) {
            self.owner.insert(pgno, other);
            self.find(
                format!("page {pgno}"),
                format!("reached again from the {tree} (already used by the {other}): a page number was damaged"),
            );
            return false;
        }
        true
    }

    fn tree(&mut self, tree: &'static str, db: DbRecord, free_list: bool) {
        let mut counted = Counted::default();
        if db.root != NO_PAGE {
            let mut stack = vec![(db.root, 1u16, None::<Vec<u8>>, None::<Vec<u8>>)];
            while let Some((pgno, level, low, high)) = stack.pop() {
                let bounds = (low.as_deref(), high.as_deref());
                let at = (level, db.depth);
                let Some(children) = self.page(tree, pgno, at, bounds, &mut counted, free_list)
                else {
                    continue;
                };
                // Child i holds the keys from its branch key up to the next one's; pushed in
                // reverse, so rows reach `on_row` in key order.
                let n = children.len();
                for i in (0..n).rev() {
                    let lo = if i == 0 {
                        low.clone()
                    } else {
                        Some(children[i].1.clone())
                    };
                    let hi = if i + 1 == n {
                        high.clone()
                    } else {
                        Some(children[i + 1].1.clone())
                    };
                    stack.push((children[i].0, level + 1, lo, hi));
                }
            }
        }
        let stats = [
            ("branch pages", counted.branch, db.branch_pages),
            ("leaf pages", counted.leaf, db.leaf_pages),
            ("overflow pages", counted.overflow, db.overflow_pages),
            ("entries", counted.entries, db.entries),
        ];
        for (what, found, recorded) in stats {
            if found != recorded {
                self.find(
                    tree.to_string(),
                    format!("the walk found {found} {what}, the database records {recorded}: part of it is unreachable or damaged"),
                );
            }
        }
    }

    /// Check page `pgno` of `tree` at `level`; its children (page, first key) for a branch page.
    fn page(
        &mut self,
        tree: &'static str,
        pgno: u64,
        (level, depth): (u16, u16),
        (low, high): (Option<&[u8]>, Option<&[u8]>),
        counted: &mut Counted,
        free_list: bool,
    ) -> Option<Vec<(u64, Vec<u8>)>> {
        let key = format!("page {pgno}");
        let mut buf = vec![0u8; self.psize];
        if !self.read_page(pgno, &mut buf) {
            self.find(
                key.clone(),
                format!(
                    "the {tree} refers to it, past the last page {} of the file",
                    self.last_pg
                ),
            );
            return None;
        }
        if !self.claim(pgno, tree) {
            return None;
        }
        let flags = u16_at(&buf, 10);
        let (lower, upper) = (u16_at(&buf, 12) as usize, u16_at(&buf, 14) as usize);
        let kind = flags;
        let wrong = if u64_at(&buf, 0) != pgno {
            Some(format!("its header names page {}", u64_at(&buf, 0)))
        } else if kind != P_BRANCH && kind != P_LEAF {
            Some(format!(
                "flags {flags:#06x} are not a branch or leaf page's"
            ))
        } else if lower < HEADER || lower > upper || upper > self.psize || (lower - HEADER) % 2 != 0
        {
            Some(format!("free-space bounds {lower}..{upper} are impossible"))
        } else if (kind == P_LEAF) != (level == depth) {
            Some(format!(
                "a {} page at level {level} of a tree of depth {depth}",
                if kind == P_LEAF { "leaf" } else { "branch" }
            ))
        } else {
            None
        };
        if let Some(wrong) = wrong {
            self.find(key.clone(), format!("{tree}: {wrong}"));
            return None;
        }
        let n = (lower - HEADER) / 2;
        let mut children = Vec::new();
        let mut previous: Option<Vec<u8>> = None;
        if kind == P_BRANCH {
            counted.branch += 1;
        } else {
            counted.leaf += 1;
        }
        for i in 0..n {
            let off = u16_at(&buf, HEADER + 2 * i) as usize;
            if off < upper || off + 8 > self.psize || off % 2 != 0 {
                self.find(
                    key.clone(),
                    format!("{tree}: node {i} at offset {off} lies outside the page's nodes"),
                );
                return None;
            }
            let (lo, hi, nflags) = (
                u16_at(&buf, off),
                u16_at(&buf, off + 2),
                u16_at(&buf, off + 4),
            );
            let ksize = u16_at(&buf, off + 6) as usize;
            let key_end = off + 8 + ksize;
            if key_end > self.psize {
                self.find(
                    key.clone(),
                    format!("{tree}: node {i}'s key of {ksize} bytes runs past the page"),
                );
                return None;
            }
            let node_key = buf[off + 8..key_end].to_vec();
            let keyed = kind == P_LEAF || i > 0;
            if keyed && previous.as_ref().is_some_and(|p| *p >= node_key) {
                self.find(
                    key.clone(),
                    format!("{tree}: key {i} is not above key {}", i - 1),
                );
                return None;
            }
            let below = low.is_some_and(|l| node_key.as_slice() < l);
            let above = high.is_some_and(|h| node_key.as_slice() >= h);
            if keyed && (below || above) {
                self.find(
                    key.clone(),
                    format!("{tree}: key {i} lies outside the range its parent gives this page"),
                );
                return None;
            }
            if kind == P_BRANCH {
                let child = u64::from(lo) | u64::from(hi) << 16 | u64::from(nflags) << 32;
                children.push((child, if i == 0 { Vec::new() } else { node_key.clone() }));
                if i > 0 {
                    previous = Some(node_key);
                }
                continue;
            }
            previous = Some(node_key.clone());
            counted.entries += 1;
            let allowed = if free_list {
                F_BIGDATA
            } else {
                F_BIGDATA | F_SUBDATA
            };
            if nflags & !allowed != 0 || nflags == F_BIGDATA | F_SUBDATA {
                // LMDB takes F_DUPDATA for a sub-database of duplicates: its cursor code would
                // follow garbage (the store has no duplicate-sorted database).
                self.find(key.clone(), format!("{tree}: node {i} has flags {nflags:#06x}, which no record of this store has"));
                return None;
            }
            let dsize = usize::from(lo) | usize::from(hi) << 16;
            let value = if nflags & F_BIGDATA != 0 {
                if key_end + 8 > self.psize {
                    self.find(
                        key.clone(),
                        format!("{tree}: node {i}'s overflow page number runs past the page"),
                    );
                    return None;
                }
                match self.overflow(tree, u64_at(&buf, key_end), dsize, counted) {
                    Some(v) => v,
                    None => continue,
                }
            } else if key_end + dsize > self.psize {
                self.find(
                    key.clone(),
                    format!("{tree}: node {i}'s value of {dsize} bytes runs past the page"),
                );
                return None;
            } else {
                buf[key_end..key_end + dsize].to_vec()
            };
            if free_list {
                self.free_pages(pgno, &value);
            } else if nflags & F_SUBDATA != 0 {
                if value.len() != 48 {
                    self.find(
                        key.clone(),
                        format!(
                            "{tree}: the record of a named database has {} bytes, not 48",
                            value.len()
                        ),
                    );
                } else {
                    self.tree("named database \"meta\"", DbRecord::parse(&value), false);
                }
            } else {
                let mut findings = std::mem::take(&mut self.findings);
                (self.on_row)(&node_key, &value, &mut findings);
                findings.truncate(MAX_FINDINGS);
                self.findings = findings;
            }
        }
        Some(children)
    }

    /// The value stored on the overflow pages starting at `pgno`.
    fn overflow(
        &mut self,
        tree: &'static str,
        pgno: u64,
        dsize: usize,
        counted: &mut Counted,
    ) -> Option<Vec<u8>> {
        let key = format!("page {pgno}");
        let pages = (HEADER - 1 + dsize) / self.psize + 1;
        let mut head = vec![0u8; HEADER];
        let fits = pgno
            .checked_add(pages as u64 - 1)
            .is_some_and(|last| last <= self.last_pg);
        if !fits || !self.read_page(pgno, &mut head) {
            self.find(key, format!("{tree}: a value of {dsize} bytes on {pages} overflow pages from here runs past the last page {}", self.last_pg));
            return None;
        }
        if u64_at(&head, 0) != pgno
            || u16_at(&head, 10) != P_OVERFLOW
            || u32_at(&head, 12) as usize != pages
        {
            self.find(
                key,
                format!("{tree}: not the overflow page of {pages} pages a value refers to"),
            );
            return None;
        }
        for p in pgno..pgno + pages as u64 {
            if !self.claim(p, tree) {
                return None;
            }
        }
        counted.overflow += pages as u64;
        let mut value = vec![0u8; dsize];
        let at = pgno * self.psize as u64 + HEADER as u64;
        if let Err(e) = self.file.read_exact_at(&mut value, at) {
            self.find(key, format!("{tree}: overflow value cannot be read: {e}"));
            return None;
        }
        Some(value)
    }

    /// A free-list record: u64 count, then that many page numbers.
    fn free_pages(&mut self, pgno: u64, value: &[u8]) {
        let count = value.get(..8).map(|b| u64_at(b, 0));
        if count.map_or(true, |c| {
            c.checked_add(1).and_then(|n| n.checked_mul(8)) != Some(value.len() as u64)
        }) {
            self.find(
                format!("page {pgno}"),
                "free list: a record's page count does not match its length".into(),
            );
            return;
        }
        self.free
            .extend(value[8..].chunks_exact(8).map(|c| u64_at(c, 0)));
    }

    /// Every page after the two meta pages is used by exactly one tree or listed free once.
    fn reachability(&mut self) {
        let free = std::mem::take(&mut self.free);
        for p in free {
            if p < 2 || p > self.last_pg {
                self.find(
                    "free list".into(),
                    format!("lists page {p}, outside the file's pages"),
                );
            } else if let Some(other) = self.owner.insert(p, "free list") {
                self.find(
                    format!("page {p}"),
                    format!("listed as free but used by the {other}"),
                );
            }
        }
        let missing = (2..=self.last_pg)
            .filter(|p| !self.owner.contains_key(p))
            .count();
        if missing > 0 {
            self.find(
                "pages".into(),
                format!(
                    "{missing} pages are neither used nor listed free: a page number was damaged"
                ),
            );
        }
    }
}

//! A bounds-checked reader of LMDB data files (`data.mdb`), in safe Rust.
//!
//! Why not read through liblmdb: liblmdb maps the file and trusts it, so a flipped byte or a
//! truncation of `data.mdb` makes it read outside the map (SIGSEGV/SIGBUS) — the whole process
//! dies, with no message. Shards come from disks and networks; a damaged one must be a report.
//! This reader walks the same on-disk B+tree (LMDB 0.9 format: two meta pages, branch, leaf and
//! overflow pages) with `pread`s into its own buffers, checks every header, offset, size, page
//! number and key order it relies on, and refuses what it does not read (duplicate-sorted or
//! nested databases) by name. It also reads with a few large reads instead of page faults
//! through a map. liblmdb (lmdb-rkv) still writes the shards, and the tests read every shard
//! back through both.
//!
//! Layout facts used (mdb.c, LMDB 0.9.x, 64-bit): page header 16 bytes = `pgno u64, pad u16,
//! flags u16, lower u16, upper u16` (overflow pages: `pages u32` instead of lower/upper), node
//! pointers (u16 offsets) after it; node = `lo u16, hi u16, flags u16, ksize u16, key, data`,
//! where a branch node's child page is `lo | hi << 16 | flags << 32` and a leaf node's data size
//! is `lo | hi << 16`, its data an 8-byte overflow page number when `flags & F_BIGDATA`. Meta
//! (at byte 16 of pages 0 and 1): `magic u32, version u32, address u64, mapsize u64,
//! dbs[2] (pad u32 = page size in dbs[0], flags u16, depth u16, branch/leaf/overflow pages,
//! entries, root: u64 each), last_pg u64, txnid u64`; the valid meta with the larger txnid is
//! current.

use super::source::Flow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
const PAGE_HEADER: usize = 16;
const NODE_HEADER: usize = 8;
const META_LEN: usize = 136;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_META: u16 = 0x08;
const F_BIGDATA: u16 = 0x01;
const P_INVALID: u64 = u64::MAX;
/// Main-database flags this reader cannot read (MDB_DUPSORT, MDB_DUPFIXED, MDB_INTEGERDUP,
/// MDB_REVERSEDUP) and one it reads but whose key order it does not check (MDB_REVERSEKEY,
/// MDB_INTEGERKEY are fine: only order checks depend on them).
const UNSUPPORTED_DB_FLAGS: u16 = 0x04 | 0x10 | 0x20 | 0x40;
const REVERSE_OR_INTEGER_KEY: u16 = 0x02 | 0x08;
/// No real tree is this deep (LMDB itself stops at 32 levels).
const MAX_DEPTH: usize = 32;

/// What is wrong with an LMDB file; `offset` is the byte offset of the page concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: damaged LMDB file at byte {offset}: {reason}")]
pub struct LmdbReadError {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// The current meta page's facts about the main database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    psize: usize,
    root: u64,
    depth: u16,
    entries: u64,
    db_flags: u16,
    last_pg: u64,
    txnid: u64,
}

/// An open, checked `data.mdb`.
pub struct LmdbFile {
    path: PathBuf,
    file: File,
    len: u64,
    meta: Meta,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses the meta at byte 16 of `page` (page number `pgno`); `Err` says why it is not valid.
fn parse_meta(page: &[u8], pgno: u64) -> Result<Meta, String> {
    let short = || "meta page cut short".to_string();
    let flags = u16_at(page, 10).ok_or_else(short)?;
    if flags & P_META == 0 {
        return Err(format!("page {pgno} is not a meta page (flags {flags:#x})"));
    }
    let m = page
        .get(PAGE_HEADER..PAGE_HEADER + META_LEN)
        .ok_or_else(short)?;
    let magic = u32_at(m, 0).ok_or_else(short)?;
    if magic != MAGIC {
        return Err(format!(
            "meta page {pgno} has magic {magic:#x}, not LMDB's {MAGIC:#x} (not an LMDB file?)"
        ));
    }
    let version = u32_at(m, 4).ok_or_else(short)?;
    if version != DATA_VERSION {
        return Err(format!(
            "meta page {pgno} is LMDB data version {version}, this reader reads {DATA_VERSION}"
        ));
    }
    // dbs[0] (free DB) at 24, dbs[1] (main DB) at 72; each 48 bytes.
    let psize = u32_at(m, 24).ok_or_else(short)? as usize;
    if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
        return Err(format!("meta page {pgno} gives page size {psize}"));
    }
    let main = 72;
    Ok(Meta {
        psize,
        db_flags: u16_at(m, main + 4).ok_or_else(short)?,
        depth: u16_at(m, main + 6).ok_or_else(short)?,
        entries: u64_at(m, main + 32).ok_or_else(short)?,
        root: u64_at(m, main + 40).ok_or_else(short)?,
        last_pg: u64_at(m, 120).ok_or_else(short)?,
        txnid: u64_at(m, 128).ok_or_else(short)?,
    })
}

impl LmdbFile {
    /// Opens `data.mdb` and checks its meta pages: both are read, the valid one with the larger
    /// transaction id is used (as liblmdb does).
    pub fn open(path: &Path) -> Result<LmdbFile, LmdbReadError> {
        let err = |offset: u64, reason: String| LmdbReadError {
            path: path.to_path_buf(),
            offset,
            reason,
        };
        let file = File::open(path).map_err(|e| err(0, format!("cannot open: {e}")))?;
        let len = file
            .metadata()
            .map_err(|e| err(0, format!("cannot stat: {e}")))?
            .len();
        let mut first = vec![0u8; PAGE_HEADER + META_LEN];
        if len < first.len() as u64 {
            return Err(err(0, format!("file is {len} bytes, too short for LMDB")));
        }
        file.read_exact_at(&mut first, 0)
            .map_err(|e| err(0, format!("read failed: {e}")))?;
        let m0 = parse_meta(&first, 0);
        // The second meta page sits one page in; its size comes from the first (or, when the
        // first is damaged, the usual 4 KiB).
        let psize = m0.as_ref().map_or(4096, |m| m.psize) as u64;
        let mut second = vec![0u8; PAGE_HEADER + META_LEN];
        let m1 = if len >= psize + second.len() as u64 {
            file.read_exact_at(&mut second, psize)
                .map_err(|e| err(psize, format!("read failed: {e}")))?;
            parse_meta(&second, 1)
        } else {
            Err(format!("file is {len} bytes: no second meta page"))
        };
        let meta = match (m0, m1) {
            (Ok(a), Ok(b)) if a.psize != b.psize => {
                return Err(err(
                    psize,
                    "the two meta pages disagree on the page size".into(),
                ))
            }
            (Ok(a), Ok(b)) => {
                if b.txnid > a.txnid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(err(0, e)),
        };
        // Every page up to the last one the meta page has used was written when the transaction
        // committed (the file never shrinks): a shorter file was cut.
        let needed = meta
            .last_pg
            .saturating_add(1)
            .saturating_mul(meta.psize as u64);
        if len < needed {
            return Err(err(
                len,
                format!(
                    "file is {len} bytes but the meta page uses {} pages of {} bytes: the file was cut short",
                    meta.last_pg.saturating_add(1),
                    meta.psize
                ),
            ));
        }
        if meta.db_flags & UNSUPPORTED_DB_FLAGS != 0 {
            return Err(err(
                0,
                format!(
                    "the main database has flags {:#x} (duplicate keys); dsprep shards never do",
                    meta.db_flags
                ),
            ));
        }
        Ok(LmdbFile {
            path: path.to_path_buf(),
            file,
            len,
            meta,
        })
    }

    /// Entries the meta page says the main database holds.
    pub fn entries(&self) -> u64 {
        self.meta.entries
    }

    fn err(&self, pgno: u64, reason: String) -> LmdbReadError {
        LmdbReadError {
            path: self.path.clone(),
            offset: pgno.saturating_mul(self.meta.psize as u64),
            reason,
        }
    }

    fn pages(&self) -> u64 {
        self.len / self.meta.psize as u64
    }

    /// Reads page `pgno` into `buf` and checks that its header names it.
    fn read_page(&self, pgno: u64, buf: &mut Vec<u8>) -> Result<u16, LmdbReadError> {
        if pgno < 2 || pgno >= self.pages() {
            return Err(self.err(
                pgno,
                format!(
                    "page number {pgno} points outside the file ({} pages)",
                    self.pages()
                ),
            ));
        }
        let ps = self.meta.psize;
        buf.resize(ps, 0);
        self.file
            .read_exact_at(buf, pgno * ps as u64)
            .map_err(|e| self.err(pgno, format!("read failed: {e}")))?;
        let stored = u64_at(buf, 0).unwrap_or(0);
        if stored != pgno {
            return Err(self.err(pgno, format!("page {pgno} says it is page {stored}")));
        }
        Ok(u16_at(buf, 10).unwrap_or(0))
    }

    /// Node offsets of a branch or leaf page, each checked to lie inside the page.
    fn node_offsets(&self, pgno: u64, page: &[u8]) -> Result<Vec<usize>, LmdbReadError> {
        let ps = self.meta.psize;
        let lower = u16_at(page, 12).unwrap_or(0) as usize;
        let upper = u16_at(page, 14).unwrap_or(0) as usize;
        if lower < PAGE_HEADER
            || lower > upper
            || upper > ps
            || !(lower - PAGE_HEADER).is_multiple_of(2)
        {
            return Err(self.err(
                pgno,
                format!("page {pgno} has free-space bounds {lower}..{upper}"),
            ));
        }
        let n = (lower - PAGE_HEADER) / 2;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let off = u16_at(page, PAGE_HEADER + 2 * i).unwrap_or(0) as usize;
            if off < upper || off + NODE_HEADER > ps {
                return Err(self.err(
                    pgno,
                    format!("node {i} of page {pgno} starts at {off}, outside the page's nodes"),
                ));
            }
            out.push(off);
        }
        Ok(out)
    }

    /// Calls `f(key, value)` for every entry in key order, checking the tree as it goes.
    /// Returns the number of entries passed to `f` (when `f` stopped the walk: so far).
    pub fn for_each(&self, f: &mut dyn FnMut(&[u8], &[u8]) -> Flow) -> Result<u64, LmdbReadError> {
        if self.meta.root == P_INVALID {
            return if self.meta.entries == 0 {
                Ok(0)
            } else {
                Err(self.err(0, format!("no root page but {} entries", self.meta.entries)))
            };
        }
        let depth = usize::from(self.meta.depth);
        if depth == 0 || depth > MAX_DEPTH {
            return Err(self.err(0, format!("tree depth {depth}")));
        }
        let mut visited = vec![false; self.pages() as usize];
        let mut seen = 0u64;
        let mut last_key: Vec<u8> = Vec::new();
        let mut value_buf = Vec::new();
        // Depth-first, in order: a stack of (page, its node offsets, next node).
        struct Level {
            pgno: u64,
            page: Vec<u8>,
            nodes: Vec<usize>,
            next: usize,
        }
        let mut stack: Vec<Level> = Vec::with_capacity(depth);
        let mut pending = Some(self.meta.root);
        loop {
            if let Some(pgno) = pending.take() {
                let slot = visited.get_mut(pgno as usize);
                match slot {
                    Some(v) if !*v => *v = true,
                    Some(_) => return Err(self.err(pgno, format!("page {pgno} is reached twice"))),
                    None => return Err(self.err(pgno, format!("page {pgno} is outside the file"))),
                }
                let mut page = Vec::new();
                let flags = self.read_page(pgno, &mut page)?;
                let level = stack.len() + 1;
                let want = if level == depth { P_LEAF } else { P_BRANCH };
                if flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META) != want {
                    return Err(self.err(
                        pgno,
                        format!(
                            "page {pgno} at level {level} of {depth} has flags {flags:#x}, expected a {} page",
                            if want == P_LEAF { "leaf" } else { "branch" }
                        ),
                    ));
                }
                let nodes = self.node_offsets(pgno, &page)?;
                if nodes.is_empty() {
                    return Err(self.err(pgno, format!("page {pgno} has no entries")));
                }
                if want == P_LEAF {
                    for (i, &off) in nodes.iter().enumerate() {
                        let (key, value) =
                            self.leaf_node(pgno, &page, i, off, &mut value_buf, &mut visited)?;
                        if seen > 0
                            && self.meta.db_flags & REVERSE_OR_INTEGER_KEY == 0
                            && key <= last_key.as_slice()
                        {
                            return Err(self.err(
                                pgno,
                                format!("keys out of order at node {i} of page {pgno}"),
                            ));
                        }
                        last_key.clear();
                        last_key.extend_from_slice(key);
                        seen += 1;
                        if seen > self.meta.entries {
                            return Err(self.err(
                                pgno,
                                format!(
                                    "more entries than the {} the meta page counts",
                                    self.meta.entries
                                ),
                            ));
                        }
                        if f(key, value) == Flow::Stop {
                            return Ok(seen);
                        }
                    }
                } else {
                    stack.push(Level {
                        pgno,
                        page,
                        nodes,
                        next: 0,
                    });
                }
            }
            // Descend into the next child of the deepest branch page, or climb.
            let Some(top) = stack.last_mut() else { break };
            if top.next >= top.nodes.len() {
                stack.pop();
                continue;
            }
            let off = top.nodes[top.next];
            top.next += 1;
            let node = &top.page[off..off + NODE_HEADER];
            let lo = u64::from(u16_at(node, 0).unwrap_or(0));
            let hi = u64::from(u16_at(node, 2).unwrap_or(0));
            let top_word = u64::from(u16_at(node, 4).unwrap_or(0));
            let ksize = usize::from(u16_at(node, 6).unwrap_or(0));
            if off + NODE_HEADER + ksize > top.page.len() {
                let p = top.pgno;
                return Err(self.err(p, format!("a key of page {p} runs past the page")));
            }
            pending = Some(lo | (hi << 16) | (top_word << 32));
        }
        if seen != self.meta.entries {
            return Err(self.err(
                0,
                format!(
                    "the tree holds {seen} entries, the meta page counts {}",
                    self.meta.entries
                ),
            ));
        }
        Ok(seen)
    }

    /// Key and value of leaf node `i` (at `off`) of page `pgno`; an overflow value is read into
    /// `buf`.
    fn leaf_node<'a>(
        &self,
        pgno: u64,
        page: &'a [u8],
        i: usize,
        off: usize,
        buf: &'a mut Vec<u8>,
        visited: &mut [bool],
    ) -> Result<(&'a [u8], &'a [u8]), LmdbReadError> {
        let node = &page[off..off + NODE_HEADER];
        let dsize = usize::from(u16_at(node, 0).unwrap_or(0))
            | (usize::from(u16_at(node, 2).unwrap_or(0)) << 16);
        let flags = u16_at(node, 4).unwrap_or(0);
        let ksize = usize::from(u16_at(node, 6).unwrap_or(0));
        let key_at = off + NODE_HEADER;
        let Some(key) = page.get(key_at..key_at + ksize) else {
            return Err(self.err(
                pgno,
                format!("the key of node {i} of page {pgno} runs past the page"),
            ));
        };
        let data_at = key_at + ksize;
        if flags & !F_BIGDATA != 0 {
            return Err(self.err(
                pgno,
                format!("node {i} of page {pgno} has flags {flags:#x} (sub-database or duplicates); dsprep shards never do"),
            ));
        }
        if flags & F_BIGDATA == 0 {
            let Some(value) = page.get(data_at..data_at + dsize) else {
                return Err(self.err(
                    pgno,
                    format!("the value of node {i} of page {pgno} runs past the page"),
                ));
            };
            return Ok((key, value));
        }
        let Some(ov) = page.get(data_at..data_at + 8).and_then(|b| u64_at(b, 0)) else {
            return Err(self.err(pgno, format!("node {i} of page {pgno} is cut short")));
        };
        let pages = self.overflow_run(pgno, i, ov, dsize)?;
        for p in ov..ov + pages {
            let v = &mut visited[p as usize];
            if *v {
                return Err(self.err(p, format!("page {p} is reached twice")));
            }
            *v = true;
        }
        self.read_overflow(ov, dsize, buf)?;
        Ok((key, buf.as_slice()))
    }
}

/// Random access (the loader's shuffled reads): one key looked up by descending the tree, with
/// the same checks on every page it touches as [`LmdbFile::for_each`].
impl LmdbFile {
    /// The value stored under `key` (copied into `out`), `Ok(false)` when there is none. Reads
    /// `depth` pages plus the value's own pages.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, LmdbReadError> {
        if self.meta.root == P_INVALID {
            return Ok(false);
        }
        let depth = usize::from(self.meta.depth);
        if depth == 0 || depth > MAX_DEPTH {
            return Err(self.err(0, format!("tree depth {depth}")));
        }
        let mut pgno = self.meta.root;
        let mut page = Vec::new();
        for level in 1..=depth {
            let flags = self.read_page(pgno, &mut page)?;
            let want = if level == depth { P_LEAF } else { P_BRANCH };
            if flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META) != want {
                return Err(self.err(
                    pgno,
                    format!("page {pgno} at level {level} of {depth} has flags {flags:#x}"),
                ));
            }
            let nodes = self.node_offsets(pgno, &page)?;
            if nodes.is_empty() {
                return Err(self.err(pgno, format!("page {pgno} has no entries")));
            }
            let key_of = |i: usize| -> Result<&[u8], LmdbReadError> {
                let off = nodes[i];
                let ksize = usize::from(u16_at(&page, off + 6).unwrap_or(0));
                page.get(off + NODE_HEADER..off + NODE_HEADER + ksize)
                    .ok_or_else(|| {
                        self.err(pgno, format!("a key of page {pgno} runs past the page"))
                    })
            };
            if want == P_BRANCH {
                // Child i holds the keys from key i (node 0's key is ignored: minus infinity)
                // up to key i+1: take the last node whose key is <= `key`.
                let (mut lo, mut hi) = (1usize, nodes.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if key_of(mid)? <= key {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                let node = &page[nodes[lo - 1]..nodes[lo - 1] + NODE_HEADER];
                let w = |at| u64::from(u16_at(node, at).unwrap_or(0));
                pgno = w(0) | (w(2) << 16) | (w(4) << 32);
                continue;
            }
            let (mut lo, mut hi) = (0usize, nodes.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                match key_of(mid)?.cmp(key) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => {
                        self.leaf_value_into(pgno, &page, mid, nodes[mid], out)?;
                        return Ok(true);
                    }
                }
            }
            return Ok(false);
        }
        Ok(false)
    }

    /// The value of leaf node `i` (at `off`) of page `pgno`, inline or in its overflow run,
    /// copied into `out`.
    fn leaf_value_into(
        &self,
        pgno: u64,
        page: &[u8],
        i: usize,
        off: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), LmdbReadError> {
        let node = &page[off..off + NODE_HEADER];
        let dsize = usize::from(u16_at(node, 0).unwrap_or(0))
            | (usize::from(u16_at(node, 2).unwrap_or(0)) << 16);
        let flags = u16_at(node, 4).unwrap_or(0);
        let ksize = usize::from(u16_at(node, 6).unwrap_or(0));
        let data_at = off + NODE_HEADER + ksize;
        if flags & !F_BIGDATA != 0 {
            return Err(self.err(
                pgno,
                format!(
                    "node {i} of page {pgno} has flags {flags:#x} (sub-database or duplicates)"
                ),
            ));
        }
        out.clear();
        if flags & F_BIGDATA == 0 {
            let value = page.get(data_at..data_at + dsize).ok_or_else(|| {
                self.err(
                    pgno,
                    format!("the value of node {i} of page {pgno} runs past the page"),
                )
            })?;
            out.extend_from_slice(value);
            return Ok(());
        }
        let ov = page
            .get(data_at..data_at + 8)
            .and_then(|b| u64_at(b, 0))
            .ok_or_else(|| self.err(pgno, format!("node {i} of page {pgno} is cut short")))?;
        self.overflow_run(pgno, i, ov, dsize)?;
        self.read_overflow(ov, dsize, out)
    }
}

/// Overflow values (`F_BIGDATA`), for the walk and the lookup alike.
impl LmdbFile {
    /// Checks the overflow run that node `i` of page `pgno` points at (`ov`): inside the file,
    /// a header page naming itself as an overflow page, long enough for `dsize` bytes. Returns
    /// its length in pages.
    fn overflow_run(
        &self,
        pgno: u64,
        i: usize,
        ov: u64,
        dsize: usize,
    ) -> Result<u64, LmdbReadError> {
        if ov < 2 || ov >= self.pages() {
            return Err(self.err(
                pgno,
                format!("node {i} of page {pgno} points at page {ov}, outside the file"),
            ));
        }
        let ps = self.meta.psize as u64;
        let mut head = [0u8; PAGE_HEADER];
        self.file
            .read_exact_at(&mut head, ov * ps)
            .map_err(|e| self.err(ov, format!("read failed: {e}")))?;
        let stored = u64_at(&head, 0).unwrap_or(0);
        let oflags = u16_at(&head, 10).unwrap_or(0);
        let pages = u64::from(u32_at(&head, 12).unwrap_or(0));
        if stored != ov || oflags & P_OVERFLOW == 0 {
            return Err(self.err(
                ov,
                format!("page {ov} is not the overflow page a value points at"),
            ));
        }
        if pages == 0
            || ov.saturating_add(pages) > self.pages()
            || (dsize as u64) + PAGE_HEADER as u64 > pages * ps
        {
            return Err(self.err(
                ov,
                format!("overflow run of {pages} pages at page {ov} cannot hold {dsize} bytes inside the file"),
            ));
        }
        Ok(pages)
    }

    /// The `dsize`-byte value of the (checked) overflow run at page `ov`, into `out`.
    fn read_overflow(&self, ov: u64, dsize: usize, out: &mut Vec<u8>) -> Result<(), LmdbReadError> {
        out.resize(dsize, 0);
        self.file
            .read_exact_at(out, ov * self.meta.psize as u64 + PAGE_HEADER as u64)
            .map_err(|e| self.err(ov, format!("read failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::writer::create_lmdb_sink;

    fn shard(records: &[Vec<u8>]) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let mut sink = create_lmdb_sink(d.path(), "s").unwrap();
        for r in records {
            sink.append(r).unwrap();
        }
        sink.finish().unwrap();
        let p = d.path().join("s.lmdb/data.mdb");
        (d, p)
    }

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn all(path: &Path) -> Result<Entries, LmdbReadError> {
        let f = LmdbFile::open(path)?;
        let mut out = Vec::new();
        f.for_each(&mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Flow::Continue
        })?;
        Ok(out)
    }

    /// Records of mixed sizes: inline values, overflow runs, enough for branch pages.
    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| (0..(i * 37) % 9000 + 1).map(|j| (i + j) as u8).collect())
            .collect()
    }

    #[test]
    fn reads_what_liblmdb_wrote_in_key_order() {
        let recs = records(700);
        let (_d, p) = shard(&recs);
        let got = all(&p).unwrap();
        // 700 records + __format__, __keys__, __len__.
        assert_eq!(got.len(), 703);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(got[i].0, format!("{i:010}").as_bytes());
            assert_eq!(&got[i].1, r, "record {i}");
        }
        assert_eq!(got[702].0, b"__len__");
        assert_eq!(got[702].1, b"700");
        assert_eq!(LmdbFile::open(&p).unwrap().entries(), 703);
    }

    #[test]
    fn stopping_early_and_empty_files() {
        let (_d, p) = shard(&records(50));
        let f = LmdbFile::open(&p).unwrap();
        let mut n = 0;
        let seen = f
            .for_each(&mut |_, _| {
                n += 1;
                if n == 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
            .unwrap();
        assert_eq!((n, seen), (3, 3));
        let (_e, p) = shard(&[]);
        assert_eq!(all(&p).unwrap().len(), 3); // metadata only
    }

    #[test]
    fn every_truncation_and_a_flip_in_every_header_is_an_error_not_a_crash() {
        let (d, p) = shard(&records(120));
        let good = std::fs::read(&p).unwrap();
        let copy = d.path().join("damaged.mdb");
        for cut in (0..good.len()).step_by(509).chain([good.len() - 1]) {
            std::fs::write(&copy, &good[..cut]).unwrap();
            assert!(all(&copy).is_err(), "truncated to {cut} bytes read as fine");
        }
        // Flip bytes in every page's header and first node; every outcome is Ok or Err.
        for page in 0..good.len() / 4096 {
            for at in [0usize, 10, 12, 14, 16, 18, 24, 40, 4000] {
                let mut b = good.clone();
                let k = page * 4096 + at;
                b[k] ^= 0xA5;
                std::fs::write(&copy, &b).unwrap();
                let _ = all(&copy);
            }
        }
    }

    #[test]
    fn garbage_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("data.mdb");
        std::fs::write(&p, vec![7u8; 20000]).unwrap();
        let e = all(&p).unwrap_err();
        assert!(e.to_string().contains("data.mdb"), "{e}");
        assert!(
            e.to_string().contains("not a meta page") || e.to_string().contains("magic"),
            "{e}"
        );
    }
    #[test]
    fn get_finds_every_key_and_only_those() {
        let recs = records(700);
        let (_d, p) = shard(&recs);
        let f = LmdbFile::open(&p).unwrap();
        let mut v = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            assert!(
                f.get_into(format!("{i:010}").as_bytes(), &mut v).unwrap(),
                "{i}"
            );
            assert_eq!(&v, r, "record {i}");
        }
        assert!(f.get_into(b"__len__", &mut v).unwrap());
        assert_eq!(v, b"700");
        for absent in [&b"0000000700"[..], b"", b"0", b"zzz", b"00000000005"] {
            assert!(!f.get_into(absent, &mut v).unwrap(), "{absent:?}");
        }
        // Damaged files: an error or an answer, never a crash.
        let good = std::fs::read(&p).unwrap();
        let copy = _d.path().join("damaged.mdb");
        for page in 0..good.len() / 4096 {
            for at in [0usize, 10, 12, 16, 18, 24, 40, 4000] {
                let mut b = good.clone();
                b[page * 4096 + at] ^= 0x5A;
                std::fs::write(&copy, &b).unwrap();
                if let Ok(f) = LmdbFile::open(&copy) {
                    let _ = f.get_into(b"0000000350", &mut v);
                }
            }
        }
    }
}

//! The parsers that face untrusted bytes, fed mutated and random inputs: the `tf.train.Example`
//! decoder, the TFRecord reader, the index parser, the annotation JSON parser, the JPEG header
//! walker and the LMDB reader. None may panic, and none may allocate more than a small multiple
//! of its input at its peak (a length field claiming gigabytes must never become an
//! allocation): a counting allocator measures every call.
//!
//! Inputs are deterministic (a fixed-seed generator): valid samples with bytes flipped,
//! inserted, deleted and cut, plus plain random buffers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

/// Counts the bytes the current thread holds and the most it held since the last reset.
struct Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = HELD.try_with(|h| {
            let now = h.get() + layout.size() as isize;
            h.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = HELD.try_with(|h| h.set(h.get() - layout.size() as isize));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = HELD.try_with(|h| {
            let now = h.get() + new_size as isize - layout.size() as isize;
            h.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (above what was held before) while `f` runs on this thread.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = HELD.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    (PEAK.with(Cell::get) - base).max(0) as usize
}

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `count` inputs derived from `seeds`: mutations (flips, insertions of 0xFF runs or varint
/// bytes, deletions, cuts, length-field-like big numbers) and random buffers.
fn inputs(seeds: &[Vec<u8>], count: usize, salt: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ salt);
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let mut v = seeds[k % seeds.len()].clone();
        match k % 6 {
            5 => {
                let n = rng.below(600);
                v = (0..n).map(|_| rng.next() as u8).collect();
            }
            _ => {
                for _ in 0..1 + rng.below(6) {
                    if v.is_empty() {
                        break;
                    }
                    let at = rng.below(v.len());
                    match rng.below(5) {
                        0 => v[at] ^= 1 << rng.below(8),
                        1 => v[at] = rng.next() as u8,
                        2 => {
                            let run = [0xFFu8, 0xFF, 0xFF, 0xFF, 0x7F];
                            v.splice(at..at, run.iter().copied());
                        }
                        3 => {
                            let len = rng.below(8).min(v.len() - at);
                            v.drain(at..at + len);
                        }
                        _ => v.truncate(at),
                    }
                }
            }
        }
        out.push(v);
    }
    out
}

/// Runs `parse` on every input: no panic, peak allocation at most `factor × len + slack`.
fn check(name: &str, all: &[Vec<u8>], factor: usize, slack: usize, parse: impl Fn(&[u8])) {
    let mut worst = (0usize, 0usize);
    for (k, input) in all.iter().enumerate() {
        let mut panicked = false;
        let peak = peak_of(|| {
            panicked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(input))).is_err();
        });
        assert!(
            !panicked,
            "{name}: input {k} ({} bytes) panicked",
            input.len()
        );
        let limit = factor * input.len() + slack;
        assert!(
            peak <= limit,
            "{name}: input {k} ({} bytes) allocated {peak} bytes at its peak (limit {limit})",
            input.len()
        );
        if peak > worst.0 {
            worst = (peak, input.len());
        }
    }
    eprintln!(
        "{name}: {} inputs, worst peak {} bytes (for a {}-byte input)",
        all.len(),
        worst.0,
        worst.1
    );
}

fn fixture(p: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
}

fn od_record(image: &[u8]) -> Vec<u8> {
    use dsprep::shard::od_example::{OdObject, OdRecord};
    let r = OdRecord {
        height: 24,
        width: 32,
        filename: "a/b.jpg",
        source_id: "17".into(),
        sha256_hex: "00".repeat(32),
        encoded: image,
        format: "jpeg",
        objects: vec![
            OdObject {
                xmin: 0.1,
                ymin: 0.2,
                xmax: 0.5,
                ymax: 0.6,
                class_text: "person",
                class_label: 1,
                is_crowd: false,
                area: 40.0,
            };
            3
        ],
    };
    let mut out = Vec::new();
    r.encode_into(&mut out);
    out
}

#[test]
fn example_decoder() {
    let seeds = vec![od_record(b"\xFF\xD8jpeg\xFF\xD9"), od_record(&[7u8; 300])];
    check("Example::decode", &inputs(&seeds, 6000, 1), 24, 4096, |b| {
        let _ = dsprep::shard::example::Example::decode(b);
        let _ = dsprep::shard::example::find_bytes_feature(b, "image/encoded");
        let _ = dsprep::shard::od_example::check_record(b, &Default::default());
    });
}

#[test]
fn tfrecord_reader() {
    let mut shard = Vec::new();
    for p in [od_record(b"x"), od_record(&[1u8; 200]), vec![]] {
        dsprep::shard::tfrecord::write_record(&mut shard, &p).unwrap();
    }
    check(
        "RecordReader",
        &inputs(&[shard], 6000, 2),
        4,
        64 << 10,
        |b| {
            let mut r = dsprep::shard::tfrecord::RecordReader::with_len(b, b.len() as u64);
            let mut buf = Vec::new();
            for _ in 0..64 {
                match r.next_into(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.is_recoverable() => {}
                    Err(_) => break,
                }
            }
        },
    );
}

#[test]
fn index_parser() {
    let seeds = vec![b"0 116\n116 232\n348 16\n".to_vec(), b"0 16".to_vec()];
    check("parse_index", &inputs(&seeds, 6000, 3), 4, 4096, |b| {
        let _ = dsprep::shard::index::parse_index(b, Path::new("x.idx"));
    });
}

#[test]
fn annotation_json_parser() {
    let seeds = vec![
        fixture("fixtures/coco/annotations/instances_val.json"),
        br#"{"images":[{"id":1,"file_name":"a.jpg","width":4,"height":3}],
            "annotations":[{"id":1,"image_id":1,"category_id":1,"bbox":[1,1,2,NaN]}],
            "categories":[{"id":1,"name":"p"}]}"#
            .to_vec(),
    ];
    // The parser reads in chunks (its buffer grows with what it reads) and keeps typed
    // annotations.
    check(
        "parse_coco_bytes",
        &inputs(&seeds, 3000, 4),
        32,
        64 << 10,
        |b| {
            let _ = dsprep::dataset::parse_coco_bytes(Path::new("a.json"), b);
        },
    );
}

#[test]
fn jpeg_header_walker() {
    let seeds: Vec<Vec<u8>> = [
        "baseline_420.jpg",
        "progressive.jpg",
        "exif_orientation_6.jpg",
        "cmyk_adobe.jpg",
        "restart.jpg",
        "lossless.jpg",
    ]
    .iter()
    .map(|n| fixture(&format!("fixtures/odd/{n}")))
    .collect();
    check(
        "parse_jpeg_header",
        &inputs(&seeds, 6000, 5),
        4,
        16 << 10,
        |b| {
            let _ = dsprep::image::parse_jpeg_header(b);
            let _ = dsprep::image::jpeg_header::parse_jpeg_header_until_scan(b);
        },
    );
}

#[test]
fn lmdb_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = dsprep::shard::writer::create_lmdb_sink(tmp.path(), "s").unwrap();
    for i in 0..40u8 {
        sink.append(&vec![i; 50 + 97 * usize::from(i)]).unwrap();
    }
    sink.finish().unwrap();
    let good = std::fs::read(tmp.path().join("s.lmdb/data.mdb")).unwrap();
    let file = tmp.path().join("fuzz.mdb");
    // Fewer inputs: each is a file on disk.
    check("LmdbFile", &inputs(&[good], 1500, 6), 3, 64 << 10, |b| {
        std::fs::write(&file, b).unwrap();
        if let Ok(f) = dsprep::shard::lmdb_read::LmdbFile::open(&file) {
            let _ = f.for_each(&mut |_, _| dsprep::shard::source::Flow::Continue);
        }
    });
}

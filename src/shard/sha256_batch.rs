//! SHA-256 of many messages at once, for `image/key/sha256` of every stored image.
//!
//! Why: one SHA-256 stream is a chain of dependent rounds; with the SHA-NI instructions it is
//! latency-bound at ≈ 1.9 GB/s per core on the machines we measure (a third of `convert`'s CPU
//! time). Sixteen messages side by side in the 16 lanes of AVX-512 registers run the same rounds
//! at ≈ 3.4 GB/s per core. Each lane hashes one message; a lane that finishes takes the next
//! message (longest first), so lanes stay full across a batch of unequal sizes. When no message
//! waits and fewer lanes than [`min_lanes`] are busy, the rest finish one stream at a time
//! (faster than a mostly empty vector). Without AVX-512 every message goes through `sha2`
//! (SHA-NI where present).
//!
//! Output is the plain SHA-256 of each message whichever path ran (tested against `sha2`).

use sha2::{Digest, Sha256};

/// Busy lanes below which the lanes stop and the rest finish one stream at a time. With SHA-NI
/// one stream runs at ≈ 1.9 GB/s and 16 lanes at ≈ 3.4 GB/s (≈ 0.21 each): fewer than nine busy
/// lanes hash slower than streams would. Without SHA-NI (AVX-512 CPUs before Ice Lake) one
/// stream is software SHA-256, ≈ 0.4 GB/s: the lanes pay off down to three.
#[cfg(target_arch = "x86_64")]
fn min_lanes() -> usize {
    if is_x86_feature_detected!("sha") {
        9
    } else {
        3
    }
}

/// SHA-256 digests of `msgs`, in order.
pub fn sha256_batch(msgs: &[&[u8]]) -> Vec<[u8; 32]> {
    #[cfg(target_arch = "x86_64")]
    if msgs.len() >= min_lanes() {
        if let Some(cpu) = lanes::Avx512::detect() {
            return lanes::digests(msgs, cpu);
        }
    }
    msgs.iter().map(|m| Sha256::digest(m).into()).collect()
}

/// Initial hash value (FIPS 180-4 §5.3.3).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Round constants (FIPS 180-4 §4.2.2).
#[cfg(target_arch = "x86_64")]
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// One message cut as SHA-256 consumes it: its whole 64-byte blocks (read in place) and the
/// padded tail (the last partial block, `0x80`, zeros, the bit length), one or two blocks.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Padded<'a> {
    body: &'a [u8],
    tail: [u8; 128],
    tail_blocks: usize,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl<'a> Padded<'a> {
    fn new(msg: &'a [u8]) -> Self {
        let whole = msg.len() / 64 * 64;
        let rest = &msg[whole..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() + 9 <= 64 { 1 } else { 2 };
        let bits = (msg.len() as u64).wrapping_mul(8);
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_be_bytes());
        Padded {
            body: &msg[..whole],
            tail,
            tail_blocks,
        }
    }

    fn blocks(&self) -> usize {
        self.body.len() / 64 + self.tail_blocks
    }

    /// Block `i` of the padded message.
    fn block(&self, i: usize) -> &[u8] {
        let body_blocks = self.body.len() / 64;
        if i < body_blocks {
            &self.body[i * 64..i * 64 + 64]
        } else {
            let t = i - body_blocks;
            &self.tail[t * 64..t * 64 + 64]
        }
    }

    /// The contiguous blocks from block `i` to the end of the part (body or tail) it is in.
    fn run_from(&self, i: usize) -> &[u8] {
        let body_blocks = self.body.len() / 64;
        if i < body_blocks {
            &self.body[i * 64..]
        } else {
            &self.tail[(i - body_blocks) * 64..self.tail_blocks * 64]
        }
    }

    /// Hashes blocks `from..` into `state` on one stream (`sha2`'s compression function).
    fn finish_on_one_stream(&self, state: &mut [u32; 8], from: usize) {
        use sha2::digest::generic_array::GenericArray;
        for i in from..self.blocks() {
            sha2::compress256(state, &[*GenericArray::from_slice(self.block(i))]);
        }
    }
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn digest_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use super::{digest_bytes, min_lanes, Padded, H0, K};
    use std::arch::x86_64::*;

    /// Proof that this CPU runs [`compress16`] (AVX-512 F and BW): the only way to reach it.
    #[derive(Clone, Copy)]
    pub struct Avx512(());

    impl Avx512 {
        /// The proof, where the CPU has AVX-512 F and BW (detected once, then cached).
        pub fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"))
                .then_some(Avx512(()))
        }
    }

    /// One lane's message in flight: which message, and how many of its blocks are in the
    /// lane's state.
    struct InFlight<'a> {
        msg: usize,
        padded: Padded<'a>,
        done: usize,
    }

    /// Hashes `msgs` sixteen lanes at a time (see the module doc).
    pub fn digests(msgs: &[&[u8]], cpu: Avx512) -> Vec<[u8; 32]> {
        let min_busy = min_lanes();
        let mut out = vec![[0u8; 32]; msgs.len()];
        let mut lanes: [Option<InFlight<'_>>; 16] = std::array::from_fn(|_| None);
        // state[word][lane]: the eight state words of each lane, as the vectors hold them.
        let mut state = [[0u32; 16]; 8];
        // Longest first: the short messages fill the lanes at the end, so lanes run out
        // together and little is left to finish on one stream.
        let mut order: Vec<usize> = (0..msgs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(msgs[i].len()));
        let mut next = 0;
        loop {
            for (l, slot) in lanes.iter_mut().enumerate() {
                if slot.is_none() && next < msgs.len() {
                    let msg = order[next];
                    *slot = Some(InFlight {
                        msg,
                        padded: Padded::new(msgs[msg]),
                        done: 0,
                    });
                    for (word, h) in state.iter_mut().zip(H0) {
                        word[l] = h;
                    }
                    next += 1;
                }
            }
            let busy = lanes.iter().flatten().count();
            if busy == 0 || (next == msgs.len() && busy < min_busy) {
                break;
            }
            // Every busy lane runs as many blocks as the shortest contiguous run among them.
            let mut runs: [&[u8]; 16] = [&[]; 16];
            let mut blocks = usize::MAX;
            for (run, lane) in runs.iter_mut().zip(&lanes) {
                if let Some(f) = lane {
                    *run = f.padded.run_from(f.done);
                    blocks = blocks.min(run.len() / 64);
                }
            }
            compress16(cpu, &mut state, &runs, blocks);
            for (l, slot) in lanes.iter_mut().enumerate() {
                if let Some(f) = slot {
                    f.done += blocks;
                    if f.done == f.padded.blocks() {
                        out[f.msg] = digest_bytes(&column(&state, l));
                        *slot = None;
                    }
                }
            }
        }
        for (l, slot) in lanes.iter_mut().enumerate() {
            if let Some(f) = slot.take() {
                let mut s = column(&state, l);
                f.padded.finish_on_one_stream(&mut s, f.done);
                out[f.msg] = digest_bytes(&s);
            }
        }
        out
    }

    fn column(state: &[[u32; 16]; 8], lane: usize) -> [u32; 8] {
        std::array::from_fn(|w| state[w][lane])
    }

    /// Compresses `blocks` 64-byte blocks (64 rounds each) in each lane whose run is not empty,
    /// reading block `b` of lane `l` from `runs[l][64 b..]`; empty runs are idle lanes (their state words are
    /// garbage afterwards, and reset when the lane takes a message).
    fn compress16(_cpu: Avx512, state: &mut [[u32; 16]; 8], runs: &[&[u8]; 16], blocks: usize) {
        assert!(runs.iter().all(|r| r.is_empty() || r.len() / 64 >= blocks));
        // SAFETY: `Avx512` exists only where the CPU has AVX-512 F/BW; the assertion above is
        // the kernel's bound on every lane it reads.
        unsafe { kernel(state, runs, blocks) }
    }

    /// One round in place (FIPS 180-4 §6.2.2 step 3), the eight working variables named in
    /// their roles for round `t`: `d` becomes `d + T1` (the new `e`), `h` becomes `T1 + T2`
    /// (the new `a`); the next round passes the names rotated by one. For `t ≥ 16` it first
    /// extends the message schedule in `w`, a ring of the last 16 words. `t` is a constant at
    /// every use, so the ring and the variables stay in registers.
    macro_rules! round {
        ($w:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $t:expr) => {{
            const T: usize = $t;
            if T >= 16 {
                let w15 = $w[(T + 1) % 16];
                let w2 = $w[(T + 14) % 16];
                let s0 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<7>(w15),
                    _mm512_ror_epi32::<18>(w15),
                    _mm512_srli_epi32::<3>(w15),
                );
                let s1 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<17>(w2),
                    _mm512_ror_epi32::<19>(w2),
                    _mm512_srli_epi32::<10>(w2),
                );
                $w[T % 16] = _mm512_add_epi32(
                    _mm512_add_epi32($w[T % 16], s0),
                    _mm512_add_epi32($w[(T + 9) % 16], s1),
                );
            }
            let kw = _mm512_add_epi32($w[T % 16], _mm512_set1_epi32(K[T] as i32));
            let sigma1 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<6>($e),
                _mm512_ror_epi32::<11>($e),
                _mm512_ror_epi32::<25>($e),
            );
            // Ch(e, f, g) = e ? f : g; Maj(a, b, c) = majority (ternary-logic tables).
            let ch = _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g);
            let t1 = _mm512_add_epi32(_mm512_add_epi32($h, sigma1), _mm512_add_epi32(ch, kw));
            let sigma0 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<2>($a),
                _mm512_ror_epi32::<13>($a),
                _mm512_ror_epi32::<22>($a),
            );
            let maj = _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c);
            $d = _mm512_add_epi32($d, t1);
            $h = _mm512_add_epi32(t1, _mm512_add_epi32(sigma0, maj));
        }};
    }

    /// Rounds `t..t + 8`: after eight rotations the names are back in place.
    macro_rules! eight_rounds {
        ($w:ident, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $t:expr) => {
            round!($w, $a, $b, $c, $d, $e, $f, $g, $h, $t);
            round!($w, $h, $a, $b, $c, $d, $e, $f, $g, $t + 1);
            round!($w, $g, $h, $a, $b, $c, $d, $e, $f, $t + 2);
            round!($w, $f, $g, $h, $a, $b, $c, $d, $e, $t + 3);
            round!($w, $e, $f, $g, $h, $a, $b, $c, $d, $t + 4);
            round!($w, $d, $e, $f, $g, $h, $a, $b, $c, $t + 5);
            round!($w, $c, $d, $e, $f, $g, $h, $a, $b, $t + 6);
            round!($w, $b, $c, $d, $e, $f, $g, $h, $a, $t + 7);
        };
    }

    /// # Safety
    /// The CPU has AVX-512 F and BW, and every non-empty `runs[l]` holds at least `64 * blocks`
    /// bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn kernel(state: &mut [[u32; 16]; 8], runs: &[&[u8]; 16], blocks: usize) {
        // Big-endian words: reverse the bytes of each 32-bit word.
        let bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
        let mut s = [_mm512_setzero_si512(); 8];
        for (v, row) in s.iter_mut().zip(state.iter()) {
            // SAFETY: a row is 16 u32 = 64 bytes (unaligned load).
            *v = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
        }
        for b in 0..blocks {
            let mut rows = [_mm512_setzero_si512(); 16];
            for (row, run) in rows.iter_mut().zip(runs) {
                if !run.is_empty() {
                    // SAFETY: the caller's bound: `run` holds `64 * blocks` bytes, b < blocks.
                    *row = unsafe { _mm512_loadu_si512(run.as_ptr().add(64 * b).cast()) };
                }
            }
            let mut w = transpose16(rows);
            for v in &mut w {
                *v = _mm512_shuffle_epi8(*v, bswap);
            }
            let [mut a, mut bb, mut c, mut d, mut e, mut f, mut g, mut h] = s;
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 0);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 8);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 16);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 24);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 32);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 40);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 48);
            eight_rounds!(w, a, bb, c, d, e, f, g, h, 56);
            for (sw, nw) in s.iter_mut().zip([a, bb, c, d, e, f, g, h]) {
                *sw = _mm512_add_epi32(*sw, nw);
            }
        }
        for (row, v) in state.iter_mut().zip(s) {
            // SAFETY: as the loads above.
            unsafe { _mm512_storeu_si512(row.as_mut_ptr().cast(), v) };
        }
    }

    /// 16×16 transpose of 32-bit words: row `l` (lane `l`'s block) in, word `t` of every lane
    /// out as vector `t`. Unpacks within 128-bit quarters, then moves the quarters.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
        // t[2p], t[2p+1]: rows 2p and 2p+1 interleaved by words (low and high halves of each quarter).
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (x, y) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        // u[4g + j]: in quarter k, word 4k + j of rows 4g..4g+4.
        let u: [__m512i; 16] = std::array::from_fn(|i| {
            let (g, j) = (i / 4, i % 4);
            let (x, y) = (t[4 * g + j / 2], t[4 * g + 2 + j / 2]);
            if j % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0xEE>(u[j], u[4 + j]);
            let v2 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let v3 = _mm512_shuffle_i32x4::<0xEE>(u[8 + j], u[12 + j]);
            out[j] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
            out[4 + j] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
            out[8 + j] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
            out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn transpose16_moves_word_t_of_lane_l_to_vector_t_lane_l() {
            if Avx512::detect().is_none() {
                eprintln!("SKIPPED: this CPU has no AVX-512 F/BW");
                return;
            }
            let m: [[u32; 16]; 16] =
                std::array::from_fn(|l| std::array::from_fn(|t| (l * 100 + t) as u32));
            // SAFETY: AVX-512 F checked above; rows are 64 bytes.
            let out = unsafe {
                let rows = std::array::from_fn(|l| _mm512_loadu_si512(m[l].as_ptr().cast()));
                transpose16(rows)
            };
            for (t, v) in out.iter().enumerate() {
                let mut got = [0u32; 16];
                // SAFETY: as above.
                unsafe { _mm512_storeu_si512(got.as_mut_ptr().cast(), *v) };
                let want: [u32; 16] = std::array::from_fn(|l| (l * 100 + t) as u32);
                assert_eq!(got, want, "vector {t}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn plain(msgs: &[&[u8]]) -> Vec<[u8; 32]> {
        msgs.iter().map(|m| Sha256::digest(m).into()).collect()
    }

    /// Every length around the padding edges (55/56/63/64 bytes into a block), empty messages,
    /// and batch sizes below, at and above the lane count, mixed lengths so lanes finish at
    /// different times and take new messages.
    #[test]
    fn batches_hash_like_sha2() {
        let lens: Vec<usize> = (0..130)
            .chain([1000, 4095, 4096, 65_537, 300_001])
            .collect();
        let all: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| message(l, i as u32))
            .collect();
        for batch in [1, 8, 9, 16, 17, 33, 135] {
            for start in [0, 3, 60] {
                let msgs: Vec<&[u8]> = all
                    .iter()
                    .cycle()
                    .skip(start)
                    .take(batch)
                    .map(|m| m.as_slice())
                    .collect();
                assert_eq!(
                    sha256_batch(&msgs),
                    plain(&msgs),
                    "batch {batch} from {start}"
                );
            }
        }
    }

    /// The lane path itself (where the CPU has it), whatever [`sha256_batch`] would pick,
    /// including batches small enough that every message finishes on one stream.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lanes_hash_like_sha2() {
        let Some(cpu) = lanes::Avx512::detect() else {
            eprintln!("SKIPPED: this CPU has no AVX-512 F/BW (sha256_batch uses sha2 here)");
            return;
        };
        let all: Vec<Vec<u8>> = (0..200)
            .map(|i| message((i * 7919) % 20_000 + i % 3, i as u32))
            .collect();
        for batch in [1, 2, 15, 16, 40, 200] {
            let msgs: Vec<&[u8]> = all.iter().take(batch).map(|m| m.as_slice()).collect();
            assert_eq!(lanes::digests(&msgs, cpu), plain(&msgs), "batch {batch}");
        }
        // Known answer (FIPS 180-2 appendix B.1), so a shared mistake with sha2 cannot hide.
        let abc: Vec<&[u8]> = vec![b"abc"; 16];
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for d in lanes::digests(&abc, cpu) {
            assert_eq!(hex::encode(d), want);
        }
    }

    #[test]
    fn padding_takes_one_or_two_blocks() {
        for (len, blocks) in [
            (0, 1),
            (55, 1),
            (56, 2),
            (63, 2),
            (64, 2),
            (119, 2),
            (120, 3),
        ] {
            let m = vec![7u8; len];
            let p = Padded::new(&m);
            assert_eq!(p.blocks(), blocks, "len {len}");
            let mut s = H0;
            p.finish_on_one_stream(&mut s, 0);
            assert_eq!(digest_bytes(&s)[..], Sha256::digest(&m)[..], "len {len}");
        }
    }
}

//! Inverse DCT to a reduced N×N block (N = 4, 3, 2, 1: scales 1/2, 3/8, 1/4, 1/8).
//!
//! The output samples are the 8×8 block's cosine series, truncated to its lowest N×N
//! frequencies and evaluated at the centres of N×N equal cells: the band limit is the
//! antialiasing filter, the point samples are exact for what is left. Same mean as the full
//! block (a DC-only block gives its full-size value everywhere).

/// Coefficients of a block in natural order within the kept N×N corner (`[v * N + u]`,
/// v = vertical frequency), as coded (the IDCT dequantizes). Slots past N·N are scratch.
pub type Block = [i32; 32];

/// The scratch slot for coefficients outside the kept corner.
pub const DISCARD: u8 = 31;

/// Cosine basis for N outputs: `m[x][u] = ½·C(u)·cos((2x+1)uπ / 2N)`, C(0) = 1/√2.
#[derive(Debug, Clone, Copy)]
pub struct Basis {
    pub n: usize,
    m: [[f32; 4]; 4],
}

impl Basis {
    pub fn new(n: usize) -> Basis {
        let n = n.clamp(1, 4);
        let mut m = [[0f32; 4]; 4];
        for (x, row) in m.iter_mut().enumerate().take(n) {
            for (u, v) in row.iter_mut().enumerate().take(n) {
                let c = if u == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                };
                let angle = (2 * x + 1) as f64 * u as f64 * std::f64::consts::PI / (2 * n) as f64;
                *v = (0.5 * c * angle.cos()) as f32;
            }
        }
        Basis { n, m }
    }
}

/// Zigzag index → natural index (row-major 8×8).
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Zigzag index (0..128; past 63 as libjpeg does for corrupt runs) → [`Block`] slot for an
/// N×N corner.
pub fn slot_map(n: usize) -> [u8; 128] {
    let mut map = [DISCARD; 128];
    for (k, &nat) in ZIGZAG.iter().enumerate() {
        let (v, u) = (usize::from(nat) / 8, usize::from(nat) % 8);
        if v < n && u < n {
            map[k] = (v * n + u) as u8;
        }
    }
    map
}

/// The highest zigzag index inside the N×N corner (coefficients after it are not needed).
pub fn last_kept(n: usize) -> usize {
    let map = slot_map(n);
    (0..64).rev().find(|&k| map[k] != DISCARD).unwrap_or(0)
}

/// Level shift, clamp and round to a byte. Rounds by adding 1.5·2²³ (the float's low mantissa
/// bits then hold the integer, nearest-even), which the compiler keeps in SIMD registers; an
/// `as u8` cast would be a saturating scalar conversion per pixel.
#[inline(always)]
fn to_u8(v: f32) -> u8 {
    ((v + 128.0).clamp(0.0, 255.0) + 12_582_912.0).to_bits() as u8
}

/// `N` copies of `v` at `out[at..]` (nothing if the row does not fit).
#[inline(always)]
fn put_row<const N: usize>(out: &mut [u8], at: usize, v: u8) {
    if let Some(row) = out.get_mut(at..at + N) {
        row.copy_from_slice(&[v; N]);
    }
}

/// The rows of an N×N output block at column `x0`, row `y0` of `out` (rows that do not fit are
/// left out).
#[inline(always)]
fn put_block<const N: usize>(
    rows: &[[u8; N]; N],
    out: &mut [u8],
    stride: usize,
    x0: usize,
    y0: usize,
) {
    for (y, row) in rows.iter().enumerate() {
        let at = (y0 + y) * stride + x0;
        if let Some(dst) = out.get_mut(at..at + N) {
            dst.copy_from_slice(row);
        }
    }
}

/// Write the N×N block for `blk` (coefficients as coded; `quant` holds each slot's
/// quantization step) at column `x0`, row `y0` of `out` (row length `stride`). `dc_only`: the
/// dequantized DC when no other coefficient of the corner is non-zero (the decoder knows it
/// from what it put; scanning the block for it was a loop per block).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn idct_into(
    b: &Basis,
    blk: &Block,
    quant: &[f32; 16],
    dc_only: Option<i32>,
    out: &mut [u8],
    stride: usize,
    x0: usize,
    y0: usize,
) {
    let n = b.n;
    if let Some(dc) = dc_only {
        // libjpeg's DC-only rounding (halves up), so 1/8 decodes agree exactly.
        let v = ((dc >> 3) + ((dc >> 2) & 1) + 128).clamp(0, 255) as u8;
        // Fixed-size copies: `fill` on an N-byte row was a call to `memset` per row (2.5 % of
        // a 12 MP decode, most blocks of smooth areas are DC-only).
        for y in 0..n {
            let at = (y0 + y) * stride + x0;
            match n {
                4 => put_row::<4>(out, at, v),
                3 => put_row::<3>(out, at, v),
                2 => put_row::<2>(out, at, v),
                1 => put_row::<1>(out, at, v),
                _ => {
                    if let Some(row) = out.get_mut(at..at + n) {
                        row.fill(v);
                    }
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    use sse2::{idct3, idct4};
    match n {
        4 => return put_block(&idct4(blk, quant), out, stride, x0, y0),
        3 => return put_block(&idct3(blk, quant), out, stride, x0, y0),
        _ => {}
    }
    for y in 0..n {
        let at = (y0 + y) * stride + x0;
        let Some(row) = out.get_mut(at..at + n) else {
            continue;
        };
        for (x, px) in row.iter_mut().enumerate() {
            let mut s = 0f32;
            for v in 0..n {
                for u in 0..n {
                    s += b.m[y][v] * b.m[x][u] * (blk[v * n + u] as f32 * quant[v * n + u]);
                }
            }
            *px = to_u8(s);
        }
    }
}

/// ½·C(u)·cos(uπ/8) terms of the 4-point basis (C(0) = 1/√2).
const A: f32 = 0.353_553_4; // ½·cos(π/4)
const B: f32 = 0.461_939_8; // ½·cos(π/8)
const C: f32 = 0.191_341_7; // ½·cos(3π/8)

/// ½·C(u)·cos((2x+1)uπ/6) terms of the 3-point basis: A3 for u = 0, ±B3 for u = 1 (x = 0, 2;
/// 0 at x = 1), C3 for u = 2 (x = 0, 2; −2·C3 at x = 1).
const A3: f32 = 0.353_553_4; // ½·(1/√2)
const B3: f32 = 0.433_012_7; // ½·cos(π/6)
const C3: f32 = 0.25; // ½·cos(π/3)

/// The 3-point IDCT of one lane: `[r0, r1, r2]` → three samples (the same operations, in the
/// same order, as the SSE2 version's lanes).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn pass3_lane(r0: f32, r1: f32, r2: f32) -> [f32; 3] {
    let e = A3 * r0;
    let p = e + C3 * r2;
    let q = B3 * r1;
    [p + q, e - (C3 + C3) * r2, p - q]
}

/// N = 3 (scale 3/8), portable: vertical pass, then horizontal, as [`sse2::idct3`].
#[cfg(any(test, not(target_arch = "x86_64")))]
fn idct3(blk: &Block, quant: &[f32; 16]) -> [[u8; 3]; 3] {
    let c = |i: usize| blk[i] as f32 * quant[i];
    // Columns u: vertical pass over v.
    let cols: [[f32; 3]; 3] = [0, 1, 2].map(|u| pass3_lane(c(u), c(3 + u), c(6 + u)));
    // cols[u][y]; rows y: horizontal pass over u.
    [0, 1, 2].map(|y| pass3_lane(cols[0][y], cols[1][y], cols[2][y]).map(to_u8))
}

/// Four lanes of the portable 4×4 IDCT: what other CPUs run, and the reference the SSE2
/// version (x86_64) is tested against byte for byte.
#[cfg(any(test, not(target_arch = "x86_64")))]
type F4 = [f32; 4];

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn add(a: F4, b: F4) -> F4 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn sub(a: F4, b: F4) -> F4 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3]]
}

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn scale(a: F4, s: f32) -> F4 {
    [a[0] * s, a[1] * s, a[2] * s, a[3] * s]
}

/// The 4-point IDCT along the first index, four lanes at a time (even/odd butterfly: 6
/// multiplies and 8 adds per lane instead of 16 and 12).
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn pass4(r: [F4; 4]) -> [F4; 4] {
    let e0 = scale(add(r[0], r[2]), A);
    let e1 = scale(sub(r[0], r[2]), A);
    let o0 = add(scale(r[1], B), scale(r[3], C));
    let o1 = sub(scale(r[1], C), scale(r[3], B));
    [add(e0, o0), add(e1, o1), sub(e1, o1), sub(e0, o0)]
}

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn transpose4(m: [F4; 4]) -> [F4; 4] {
    [
        [m[0][0], m[1][0], m[2][0], m[3][0]],
        [m[0][1], m[1][1], m[2][1], m[3][1]],
        [m[0][2], m[1][2], m[2][2], m[3][2]],
        [m[0][3], m[1][3], m[2][3], m[3][3]],
    ]
}

#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn row_f32(blk: &Block, quant: &[f32; 16], v: usize) -> F4 {
    [0, 1, 2, 3].map(|u| blk[v * 4 + u] as f32 * quant[v * 4 + u])
}

/// N = 4: vertical pass, transpose, horizontal pass, transpose back to rows.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn idct4(blk: &Block, quant: &[f32; 16]) -> [[u8; 4]; 4] {
    let rows = [0, 1, 2, 3].map(|v| row_f32(blk, quant, v));
    transpose4(pass4(transpose4(pass4(rows)))).map(|r| r.map(to_u8))
}

/// [`idct4`] in SSE2 registers, the same operations in the same order (so the same bytes):
/// the portable version compiled to scalar conversions, shuffles and spills.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::{Block, A, A3, B, B3, C, C3};
    use std::arch::x86_64::*;

    /// The 3×3 output rows of `blk`'s kept corner (slots `v * 3 + u`). Lane 3 of every row
    /// load holds the next row's first coefficient: it only ever meets other lane-3 values
    /// and is dropped at the end.
    #[inline(always)]
    pub fn idct3(blk: &Block, quant: &[f32; 16]) -> [[u8; 3]; 3] {
        // SAFETY: SSE2 is part of the x86_64 baseline; the loads read `blk[0..10]` (of 32)
        // and `quant[0..10]` (of 16).
        let packed = unsafe {
            let (p, q) = (blk.as_ptr(), quant.as_ptr());
            let row = |v: usize| {
                _mm_mul_ps(
                    _mm_cvtepi32_ps(_mm_loadu_si128(p.add(3 * v) as *const __m128i)),
                    _mm_loadu_ps(q.add(3 * v)),
                )
            };
            let [t0, t1, t2] = pass3([row(0), row(1), row(2)]);
            let cols = transpose([t0, t1, t2, _mm_setzero_ps()]);
            let [o0, o1, o2] = pass3([cols[0], cols[1], cols[2]]);
            let px = transpose([o0, o1, o2, _mm_setzero_ps()]);
            let [a, b, c, d] = px.map(|v| to_i32(v));
            _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d))
        };
        let mut bytes = [0u8; 16];
        // SAFETY: as above; the store writes the 16 bytes of `bytes`.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, packed) };
        [0, 1, 2].map(|y| [bytes[4 * y], bytes[4 * y + 1], bytes[4 * y + 2]])
    }

    /// See [`super::pass3_lane`].
    ///
    /// # Safety
    /// Needs SSE2 (the x86_64 baseline).
    #[inline(always)]
    unsafe fn pass3(r: [__m128; 3]) -> [__m128; 3] {
        let e = _mm_mul_ps(r[0], _mm_set1_ps(A3));
        let p = _mm_add_ps(e, _mm_mul_ps(r[2], _mm_set1_ps(C3)));
        let q = _mm_mul_ps(r[1], _mm_set1_ps(B3));
        [
            _mm_add_ps(p, q),
            _mm_sub_ps(e, _mm_mul_ps(r[2], _mm_set1_ps(C3 + C3))),
            _mm_sub_ps(p, q),
        ]
    }

    /// Level shift, clamp, round to nearest-even (as `to_u8`: MXCSR's default rounding).
    ///
    /// # Safety
    /// Needs SSE2 (the x86_64 baseline).
    #[inline(always)]
    unsafe fn to_i32(v: __m128) -> __m128i {
        let v = _mm_min_ps(
            _mm_max_ps(_mm_add_ps(v, _mm_set1_ps(128.0)), _mm_setzero_ps()),
            _mm_set1_ps(255.0),
        );
        _mm_cvtps_epi32(v)
    }

    /// The 4×4 output rows of `blk`'s kept corner.
    #[inline(always)]
    pub fn idct4(blk: &Block, quant: &[f32; 16]) -> [[u8; 4]; 4] {
        // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it); the loads
        // read `blk[0..16]`, inside the 32-element array, and the 16 floats of `quant`.
        let packed = unsafe {
            let (p, q) = (blk.as_ptr() as *const __m128i, quant.as_ptr());
            let row = |v: usize| {
                _mm_mul_ps(
                    _mm_cvtepi32_ps(_mm_loadu_si128(p.add(v))),
                    _mm_loadu_ps(q.add(4 * v)),
                )
            };
            let r = [row(0), row(1), row(2), row(3)];
            let px = transpose(pass(transpose(pass(r))));
            let [a, b, c, d] = px.map(|v| to_i32(v));
            _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d))
        };
        let mut bytes = [0u8; 16];
        // SAFETY: as above; the store writes the 16 bytes of `bytes`.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, packed) };
        [0, 1, 2, 3].map(|y| {
            [
                bytes[4 * y],
                bytes[4 * y + 1],
                bytes[4 * y + 2],
                bytes[4 * y + 3],
            ]
        })
    }

    /// See [`super::pass4`].
    ///
    /// # Safety
    /// Needs SSE2 (the x86_64 baseline).
    #[inline(always)]
    unsafe fn pass(r: [__m128; 4]) -> [__m128; 4] {
        let (a, b, c) = (_mm_set1_ps(A), _mm_set1_ps(B), _mm_set1_ps(C));
        let e0 = _mm_mul_ps(_mm_add_ps(r[0], r[2]), a);
        let e1 = _mm_mul_ps(_mm_sub_ps(r[0], r[2]), a);
        let o0 = _mm_add_ps(_mm_mul_ps(r[1], b), _mm_mul_ps(r[3], c));
        let o1 = _mm_sub_ps(_mm_mul_ps(r[1], c), _mm_mul_ps(r[3], b));
        [
            _mm_add_ps(e0, o0),
            _mm_add_ps(e1, o1),
            _mm_sub_ps(e1, o1),
            _mm_sub_ps(e0, o0),
        ]
    }

    /// # Safety
    /// Needs SSE2 (the x86_64 baseline).
    #[inline(always)]
    unsafe fn transpose(m: [__m128; 4]) -> [__m128; 4] {
        let t0 = _mm_unpacklo_ps(m[0], m[1]);
        let t1 = _mm_unpacklo_ps(m[2], m[3]);
        let t2 = _mm_unpackhi_ps(m[0], m[1]);
        let t3 = _mm_unpackhi_ps(m[2], m[3]);
        [
            _mm_movelh_ps(t0, t1),
            _mm_movehl_ps(t1, t0),
            _mm_movelh_ps(t2, t3),
            _mm_movehl_ps(t3, t2),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 8×8 float IDCT of the full block, averaged over each (8/N)² cell, is close to the
    /// reduced output when the block has only low frequencies (then truncation loses nothing
    /// and cell averages ≈ centre samples of a smooth signal).
    #[test]
    fn dc_only_blocks_are_exact_and_low_frequencies_follow_the_full_idct() {
        for n in [1usize, 2, 4] {
            let b = Basis::new(n);
            let mut blk = [0i32; 32];
            blk[0] = -80; // −10 from mid grey
            let mut out = vec![0u8; n * n];
            idct_into(&b, &blk, &[1.0; 16], Some(blk[0]), &mut out, n, 0, 0);
            assert!(out.iter().all(|&v| v == 118), "n={n}: {out:?}");
        }
        // One horizontal first harmonic: full IDCT f(x) = ½·F·cos((2x+1)π/16)·(1/√2) for rows.
        let b = Basis::new(4);
        let mut blk = [0i32; 32];
        blk[1] = 160; // v=0, u=1
        let mut out = vec![0u8; 16];
        idct_into(&b, &blk, &[1.0; 16], None, &mut out, 4, 0, 0);
        for x in 0..4 {
            let centre = 2.0 * x as f64 + 0.5; // cell centre on the 8-grid: 0.5, 2.5, ...
            let full = 0.25
                * std::f64::consts::FRAC_1_SQRT_2
                * 160.0
                * ((2.0 * centre + 1.0) * std::f64::consts::PI / 16.0).cos();
            let want = (full + 128.0).round();
            for y in 0..4 {
                assert!(
                    (f64::from(out[y * 4 + x]) - want).abs() <= 1.0,
                    "x={x} y={y}"
                );
            }
        }
    }

    /// The butterfly 4×4 IDCT equals the plain basis sums.
    #[test]
    fn butterfly_matches_the_basis() {
        let b = Basis::new(4);
        let mut blk = [0i32; 32];
        for (i, c) in blk.iter_mut().take(16).enumerate() {
            *c = ((i as i32 * 37) % 29 - 14) * 9;
        }
        let fast = idct4(&blk, &[1.0; 16]).concat();
        for y in 0..4 {
            for x in 0..4 {
                let mut s = 0f32;
                for v in 0..4 {
                    for u in 0..4 {
                        s += b.m[y][v] * b.m[x][u] * blk[v * 4 + u] as f32;
                    }
                }
                assert_eq!(fast[y * 4 + x], to_u8(s), "({x},{y})");
            }
        }
    }

    /// A coefficient block whose first `coeffs` slots are uniform in `-span..=span` (xorshift
    /// state `s`), the rest zero.
    fn random_block(s: &mut u32, coeffs: usize, span: u32) -> [i32; 32] {
        let mut blk = [0i32; 32];
        for c in blk.iter_mut().take(coeffs) {
            *s ^= *s << 13;
            *s ^= *s >> 17;
            *s ^= *s << 5;
            *c = (*s % (2 * span + 1)) as i32 - span as i32;
        }
        blk
    }

    /// The SSE2 4×4 IDCT gives the portable one's bytes, on coefficient ranges from flat to
    /// saturating.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sse2_idct_gives_the_portable_bytes() {
        let mut s = 0x9E37_79B9u32;
        for round in 0..20_000 {
            let span = [8, 64, 512, 4096, 32768][round % 5];
            let blk = random_block(&mut s, 16, span);
            let quant: [f32; 16] = std::array::from_fn(|i| ((i * 7 + round) % 255 + 1) as f32);
            let want = idct4(&blk, &quant);
            assert_eq!(sse2::idct4(&blk, &quant), want, "block {blk:?}");
        }
    }

    /// The 3×3 IDCT: SSE2 gives the portable bytes, and both follow the basis sums.
    #[test]
    fn idct3_matches_the_basis_and_sse2_the_portable_bytes() {
        let b = Basis::new(3);
        let mut s = 0x2545_F491u32;
        for round in 0..20_000 {
            let span = [8, 64, 512, 4096][round % 4];
            // Slots past the 3×3 corner hold junk: they must not matter.
            let blk = random_block(&mut s, 12, span);
            let quant: [f32; 16] = std::array::from_fn(|i| ((i * 5 + round) % 255 + 1) as f32);
            let portable = idct3(&blk, &quant);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(sse2::idct3(&blk, &quant), portable, "block {blk:?}");
            for (y, row) in portable.iter().enumerate() {
                for (x, &px) in row.iter().enumerate() {
                    let mut sum = 0f32;
                    for v in 0..3 {
                        for u in 0..3 {
                            let i = v * 3 + u;
                            sum += b.m[y][v] * b.m[x][u] * (blk[i] as f32 * quant[i]);
                        }
                    }
                    assert!(
                        (i32::from(px) - i32::from(to_u8(sum))).abs() <= 1,
                        "({x},{y})"
                    );
                }
            }
        }
    }

    #[test]
    fn slot_map_keeps_the_corner() {
        let m = slot_map(4);
        assert_eq!(m[0], 0);
        assert_eq!(m[1], 1); // (0,1)
        assert_eq!(m[2], 4); // (1,0)
        assert_eq!(m[24], 15); // (3,3) is zigzag 24
        assert_eq!(m[10], DISCARD); // (4,0)
        assert_eq!(m[63], DISCARD);
        assert_eq!(m[100], DISCARD);
        assert_eq!(slot_map(4).iter().filter(|&&s| s != DISCARD).count(), 16);
        assert_eq!(slot_map(1).iter().filter(|&&s| s != DISCARD).count(), 1);
        assert_eq!((last_kept(1), last_kept(2), last_kept(4)), (0, 4, 24));
    }
}

//! Inverse DCT to a reduced N×N block (N = 4, 2, 1: scales 1/2, 1/4, 1/8).
//!
//! The output samples are the 8×8 block's cosine series, truncated to its lowest N×N
//! frequencies and evaluated at the centres of N×N equal cells: the band limit is the
//! antialiasing filter, the point samples are exact for what is left. Same mean as the full
//! block (a DC-only block gives its full-size value everywhere).

/// Coefficients of a block in natural order within the kept N×N corner (`[v * N + u]`,
/// v = vertical frequency), dequantized. Slots past N·N are scratch.
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

/// Write the N×N block for `blk` at column `x0`, row `y0` of `out` (row length `stride`).
#[inline(always)]
pub fn idct_into(b: &Basis, blk: &Block, out: &mut [u8], stride: usize, x0: usize, y0: usize) {
    let n = b.n;
    let ac_zero = blk[1..n * n].iter().all(|&c| c == 0);
    if ac_zero {
        // libjpeg's DC-only rounding (halves up), so 1/8 decodes agree exactly.
        let v = ((blk[0] >> 3) + ((blk[0] >> 2) & 1) + 128).clamp(0, 255) as u8;
        // Fixed-size copies: `fill` on an N-byte row was a call to `memset` per row (2.5 % of
        // a 12 MP decode, most blocks of smooth areas are DC-only).
        for y in 0..n {
            let at = (y0 + y) * stride + x0;
            match n {
                4 => put_row::<4>(out, at, v),
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
    if n == 4 {
        idct4(blk, out, stride, x0, y0);
        return;
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
                    s += b.m[y][v] * b.m[x][u] * blk[v * n + u] as f32;
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

/// The 4-point IDCT along the first index, four lanes at a time (even/odd butterfly: 6
/// multiplies and 8 adds per lane instead of 16 and 12).
#[inline(always)]
fn pass4(r: &[[f32; 4]; 4]) -> [[f32; 4]; 4] {
    let mut o = [[0f32; 4]; 4];
    for l in 0..4 {
        let e0 = A * (r[0][l] + r[2][l]);
        let e1 = A * (r[0][l] - r[2][l]);
        let o0 = B * r[1][l] + C * r[3][l];
        let o1 = C * r[1][l] - B * r[3][l];
        o[0][l] = e0 + o0;
        o[1][l] = e1 + o1;
        o[2][l] = e1 - o1;
        o[3][l] = e0 - o0;
    }
    o
}

#[inline(always)]
fn transpose4(m: &[[f32; 4]; 4]) -> [[f32; 4]; 4] {
    std::array::from_fn(|i| std::array::from_fn(|j| m[j][i]))
}

/// N = 4: vertical pass, transpose, horizontal pass, transpose back to rows.
#[inline(always)]
fn idct4(blk: &Block, out: &mut [u8], stride: usize, x0: usize, y0: usize) {
    let rows: [[f32; 4]; 4] =
        std::array::from_fn(|v| std::array::from_fn(|u| blk[v * 4 + u] as f32));
    let cols = pass4(&transpose4(&pass4(&rows)));
    let px = transpose4(&cols);
    for (y, r) in px.iter().enumerate() {
        let at = (y0 + y) * stride + x0;
        if let Some(row) = out.get_mut(at..at + 4) {
            for (p, &v) in row.iter_mut().zip(r) {
                *p = to_u8(v);
            }
        }
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
            idct_into(&b, &blk, &mut out, n, 0, 0);
            assert!(out.iter().all(|&v| v == 118), "n={n}: {out:?}");
        }
        // One horizontal first harmonic: full IDCT f(x) = ½·F·cos((2x+1)π/16)·(1/√2) for rows.
        let b = Basis::new(4);
        let mut blk = [0i32; 32];
        blk[1] = 160; // v=0, u=1
        let mut out = vec![0u8; 16];
        idct_into(&b, &blk, &mut out, 4, 0, 0);
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
        let mut fast = vec![0u8; 16];
        idct4(&blk, &mut fast, 4, 0, 0);
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

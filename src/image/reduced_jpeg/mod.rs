//! Our own decoder for the common JPEG — baseline Huffman, 8-bit, YCbCr 4:2:0/4:2:2/4:4:0/
//! 4:4:4 or gray, one interleaved scan — straight to reduced-size (1/2, 3/8, 1/4, 1/8) planes.
//!
//! Why: presizing 12 MP photos, libjpeg-turbo's Huffman decoding is two thirds of the time and
//! the part no scaling removes. This decoder does the same work with a combined
//! code-and-value lookup ([`huffman`]) and a word-at-a-time bit reader ([`bits`]), keeps only
//! the coefficients the reduced IDCT uses ([`idct`]), and writes the planes `presize` resizes
//! (no colour conversion, no chroma upsampling, no per-MCU buffers).
//!
//! It is a fast path, not a second opinion: anything else (progressive, arithmetic, 12-bit,
//! odd sampling, several scans) and any irregularity in the data (a bad code, data ending
//! early, a missing or misplaced restart marker, bytes left before a marker) returns `None`,
//! and the caller decodes with libjpeg-turbo, whose answer (image or error) is then the one
//! reported. Safe code only; every loop is bounded by the frame size.

mod bits;
mod huffman;
mod idct;

use super::resize::Plane;
use super::scaled_decode::{Decoded, Layout};
use bits::BitReader;
use huffman::{Class, HuffTable};
use idct::{slot_map, Basis, Block};

#[derive(Debug, Clone, Copy)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
}

#[derive(Debug, Clone)]
struct Frame {
    width: usize,
    height: usize,
    comps: Vec<Component>,
}

/// Tables and settings collected from the markers before the scan.
#[derive(Default)]
struct Tables {
    /// Quantization tables in zigzag order.
    quant: [Option<[i32; 64]>; 4],
    dc: [Option<HuffTable>; 4],
    ac: [Option<HuffTable>; 4],
    restart: usize,
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(*b.get(at)?) << 8 | usize::from(*b.get(at + 1)?))
}

fn parse_dqt(seg: &[u8], t: &mut Tables) -> Option<()> {
    let mut p = 0;
    while p < seg.len() {
        let pq_tq = *seg.get(p)?;
        let (precision, id) = (pq_tq >> 4, usize::from(pq_tq & 15));
        p += 1;
        // 8-bit steps only, none zero (what baseline allows): then every dequantized value the
        // IDCT multiplies out in floating point (|coefficient| < 2¹¹ times a step < 2⁸) is
        // exact (a DC sum that runs away on corrupt data only changes garbage pixels).
        if precision != 0 {
            return None;
        }
        let mut q = [0i32; 64];
        for v in q.iter_mut() {
            p += 1;
            *v = i32::from(*seg.get(p - 1)?);
            if *v == 0 {
                return None;
            }
        }
        *t.quant.get_mut(id)? = Some(q);
    }
    Some(())
}

fn parse_dht(seg: &[u8], t: &mut Tables) -> Option<()> {
    let mut p = 0;
    while p < seg.len() {
        let tc_th = *seg.get(p)?;
        let (class, id) = (tc_th >> 4, usize::from(tc_th & 15));
        let mut counts = [0u8; 16];
        counts.copy_from_slice(seg.get(p + 1..p + 17)?);
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let symbols = seg.get(p + 17..p + 17 + total)?;
        match class {
            0 => *t.dc.get_mut(id)? = Some(HuffTable::new(&counts, symbols, Class::Dc)?),
            1 => *t.ac.get_mut(id)? = Some(HuffTable::new(&counts, symbols, Class::Ac)?),
            _ => return None,
        }
        p += 17 + total;
    }
    Some(())
}

fn parse_sof(seg: &[u8]) -> Option<Frame> {
    if *seg.first()? != 8 {
        return None;
    }
    let (height, width) = (be16(seg, 1)?, be16(seg, 3)?);
    let n = usize::from(*seg.get(5)?);
    let mut comps = Vec::with_capacity(n);
    for i in 0..n {
        let c = seg.get(6 + 3 * i..9 + 3 * i)?;
        comps.push(Component {
            id: c[0],
            h: usize::from(c[1] >> 4),
            v: usize::from(c[1] & 15),
            tq: usize::from(c[2]),
        });
    }
    let sampling_ok = match comps.as_slice() {
        [_] => true,
        [y, cb, cr] => {
            (1..=2).contains(&y.h)
                && (1..=2).contains(&y.v)
                && [cb, cr].iter().all(|c| c.h == 1 && c.v == 1)
        }
        _ => false,
    };
    (width > 0 && height > 0 && sampling_ok && comps.iter().all(|c| c.tq < 4)).then_some(Frame {
        width,
        height,
        comps,
    })
}

/// The scan's component order as indices into the frame, with their (DC, AC) table ids.
fn parse_sos(seg: &[u8], frame: &Frame) -> Option<Vec<(usize, usize, usize)>> {
    let ns = usize::from(*seg.first()?);
    if ns != frame.comps.len() {
        return None;
    }
    let mut order = Vec::with_capacity(ns);
    for i in 0..ns {
        let (cs, t) = (*seg.get(1 + 2 * i)?, *seg.get(2 + 2 * i)?);
        let ci = frame.comps.iter().position(|c| c.id == cs)?;
        if order.iter().any(|&(o, _, _)| o == ci) {
            return None;
        }
        order.push((ci, usize::from(t >> 4), usize::from(t & 15)));
    }
    // Baseline sequential: spectral selection 0..63, no successive approximation.
    (seg.get(1 + 2 * ns..4 + 2 * ns)? == [0, 63, 0]).then_some(order)
}

/// Decode `bytes` at `eighths`/8 (4, 3, 2 or 1: an N×N IDCT per block with N = `eighths`)
/// into planes, or `None` when this decoder does not take the file (see the module docs).
/// `max_pixels` bounds the luma plane.
pub fn decode_reduced(bytes: &[u8], eighths: u32, max_pixels: u64) -> Option<Decoded> {
    let n = match eighths {
        1..=4 => eighths as usize,
        _ => return None,
    };
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut t = Tables::default();
    let mut frame: Option<Frame> = None;
    let mut pos = 2;
    let (frame, order, data_start) = loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        while *bytes.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = *bytes.get(pos + 1)?;
        if marker == 0x01 || marker == 0xD8 || (0xD0..=0xD7).contains(&marker) {
            return None;
        }
        let len = be16(bytes, pos + 2)?;
        let seg = bytes.get(pos + 4..(pos + 2 + len).max(pos + 4))?;
        if len < 2 {
            return None;
        }
        pos += 2 + len;
        match marker {
            0xDB => parse_dqt(seg, &mut t)?,
            0xC4 => parse_dht(seg, &mut t)?,
            0xC0 | 0xC1 if frame.is_none() => frame = Some(parse_sof(seg)?),
            0xC0..=0xCF => return None, // other processes, a second frame, DAC
            0xDD => t.restart = be16(seg, 0)?,
            0xDA => {
                let f = frame.take()?;
                let order = parse_sos(seg, &f)?;
                break (f, order, pos);
            }
            0xD9 | 0xDC => return None,
            _ => {}
        }
    };
    Scan::new(&t, &frame, &order, n, max_pixels)?.run(bytes, data_start, eighths)
}

/// Per-component decoding state.
struct CompState<'t> {
    plane: usize,
    dc: &'t HuffTable,
    ac: &'t HuffTable,
    /// DC quantization step.
    q0: i32,
    /// Zigzag index (0..128) → [`Block`] slot: where an AC coefficient goes (undequantized).
    slot: [u8; 128],
    /// Quantization step of each kept slot: the IDCT dequantizes (in its float registers, four
    /// at a time, instead of a multiply per coefficient in the decode loop).
    quant: [f32; 16],
    pred: i32,
    /// Blocks per MCU (1×1 for a single-component scan).
    h: usize,
    v: usize,
}

struct Scan<'t> {
    comps: Vec<CompState<'t>>,
    planes: Vec<Plane>,
    extents: Vec<(f64, f64)>,
    basis: Basis,
    /// Highest zigzag index inside the kept corner.
    last: usize,
    /// Bits of the kept AC slots (1..N·N) in the non-zero mask of a block.
    ac_slots: u32,
    mcus_x: usize,
    mcus_y: usize,
    restart: usize,
    gray: bool,
}

impl<'t> Scan<'t> {
    fn new(
        t: &'t Tables,
        f: &Frame,
        order: &[(usize, usize, usize)],
        n: usize,
        max_pixels: u64,
    ) -> Option<Scan<'t>> {
        let gray = f.comps.len() == 1;
        // A single-component scan is not interleaved: one block per MCU, sampling ignored.
        let (hmax, vmax) = match f.comps.first() {
            Some(y) if !gray => (y.h, y.v),
            _ => (1, 1),
        };
        let (mcus_x, mcus_y) = (f.width.div_ceil(8 * hmax), f.height.div_ceil(8 * vmax));
        let (yw, yh) = (mcus_x * hmax * n, mcus_y * vmax * n);
        if (yw as u64).saturating_mul(yh as u64) > max_pixels {
            return None;
        }
        let scale = n as f64 / 8.0;
        let (ew, eh) = (f.width as f64 * scale, f.height as f64 * scale);
        let mut planes = vec![Plane::new(yw, yh, 1)];
        let mut extents = vec![(ew, eh)];
        if !gray {
            for _ in 0..2 {
                planes.push(Plane::new(mcus_x * n, mcus_y * n, 1));
                extents.push((ew / hmax as f64, eh / vmax as f64));
            }
        }
        let map = slot_map(n);
        let mut comps = Vec::with_capacity(order.len());
        for &(ci, td, ta) in order {
            let c = f.comps.get(ci)?;
            let q = (*t.quant.get(c.tq)?)?;
            let (h, v) = if gray || ci != 0 { (1, 1) } else { (c.h, c.v) };
            comps.push(CompState {
                plane: ci,
                dc: t.dc.get(td)?.as_ref()?,
                ac: t.ac.get(ta)?.as_ref()?,
                q0: q[0],
                slot: map,
                quant: {
                    let mut quant = [1f32; 16];
                    for (k, &slot) in map.iter().enumerate().take(64) {
                        if let Some(step) = quant.get_mut(usize::from(slot)) {
                            *step = q[k] as f32;
                        }
                    }
                    quant
                },
                pred: 0,
                h,
                v,
            });
        }
        Some(Scan {
            comps,
            planes,
            extents,
            basis: Basis::new(n),
            last: idct::last_kept(n),
            ac_slots: ((1u32 << (n * n)) - 1) & !1,
            mcus_x,
            mcus_y,
            restart: t.restart,
            gray,
        })
    }

    fn run(mut self, bytes: &[u8], start: usize, eighths: u32) -> Option<Decoded> {
        let mut r = BitReader::new(bytes, start);
        let n = self.basis.n;
        let mut mcu = 0usize;
        let mut next_rst = 0u8;
        for my in 0..self.mcus_y {
            for mx in 0..self.mcus_x {
                if self.restart > 0 && mcu > 0 && mcu.is_multiple_of(self.restart) {
                    let (marker, next) = r.finish_segment()?;
                    if marker != 0xD0 + next_rst {
                        return None;
                    }
                    r = next;
                    next_rst = (next_rst + 1) & 7;
                    for c in &mut self.comps {
                        c.pred = 0;
                    }
                }
                mcu += 1;
                for c in &mut self.comps {
                    let plane = self.planes.get_mut(c.plane)?;
                    let stride = plane.width;
                    for by in 0..c.v {
                        for bx in 0..c.h {
                            let mut blk: Block = [0; 32];
                            c.pred = c.pred.wrapping_add(c.dc.dc_diff(&mut r).ok()?);
                            blk[0] = c.pred;
                            let slots = &c.slot;
                            // Bit s set when slot s got a value (never zero: an AC value of
                            // size 0 is a run or an end of block; slot 31 = discarded).
                            let mut nonzero = 0u32;
                            c.ac.ac_block(&mut r, self.last, |k, v| {
                                let slot = slots[k & 127];
                                blk[usize::from(slot & 31)] = v;
                                nonzero |= 1 << (slot & 31);
                            })
                            .ok()?;
                            let dc =
                                (nonzero & self.ac_slots == 0).then(|| c.pred.wrapping_mul(c.q0));
                            let x0 = (mx * c.h + bx) * n;
                            let y0 = (my * c.v + by) * n;
                            idct::idct_into(
                                &self.basis,
                                &blk,
                                &c.quant,
                                dc,
                                &mut plane.data,
                                stride,
                                x0,
                                y0,
                            );
                        }
                    }
                }
            }
            if r.overran() {
                return None;
            }
        }
        if r.finish_segment()?.0 != 0xD9 {
            return None;
        }
        Some(Decoded {
            layout: if self.gray { Layout::Gray } else { Layout::Ycc },
            planes: self.planes,
            extents: self.extents,
            eighths,
        })
    }
}

#[cfg(test)]
mod tests;

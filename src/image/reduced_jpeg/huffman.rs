//! Huffman tables of a baseline JPEG and the per-block entropy decode.
//!
//! Why not libjpeg's scheme: libjpeg-turbo looks up 8 bits to find a code's length and symbol,
//! then reads the value bits and sign-extends them in a second step. Here an AC lookup of
//! [`FAST_BITS`] bits gives, for every code whose length plus value bits fit, the run, the
//! finished coefficient and the bit count in one 32-bit entry; on grainy photos that covers
//! most coefficients. Longer codes take the canonical-code path (per-length max codes).

use super::bits::BitReader;

/// Bits looked up at once.
pub const FAST_BITS: u32 = 10;
const FAST_SIZE: usize = 1 << FAST_BITS;
/// Bits looked up at once when skipping coefficients.
pub const PACK_BITS: u32 = 12;
const PACK_SIZE: usize = 1 << PACK_BITS;

// Entry layout (u32): bits 0..5 bits to consume, 6..7 kind, 8..11 run, 12..15 value size still
// to read, 16..31 the coefficient (i16) when complete. 0 = not in the table (long code).
const KIND_NEEDS_VALUE: u32 = 0;
const KIND_COMPLETE: u32 = 1;
const KIND_EOB: u32 = 2;
const KIND_ZRL: u32 = 3;

/// A decoded symbol's meaning for an AC coefficient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffError {
    /// A code not in the table.
    BadCode,
}

/// Which coefficients a table codes (DHT's table class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Dc,
    Ac,
}

pub struct HuffTable {
    /// `FAST_BITS` prefix → (length << 8 | symbol) for codes of at most `FAST_BITS` bits, else 0.
    sym: Box<[u16; FAST_SIZE]>,
    /// AC combined lookup (see the entry layout above).
    ac: Box<[u32; FAST_SIZE]>,
    /// AC lookup for coefficients that are skipped (outside the kept corner): bits 0..5 the
    /// code plus value bits, bits 8..15 how far k moves (run + 1; 16 for ZRL; 64 for EOB).
    /// 0 = long code.
    skip: Box<[u32; FAST_SIZE]>,
    /// Skipping several codes at once: [`PACK_BITS`] prefix → bits 0..3 the bits of every
    /// code (with value bits) that fits whole, bits 4..10 how far they move k, bit 11 set when
    /// the last of them is EOB. 0 = not even one fits.
    skip_many: Box<[u16; PACK_SIZE]>,
    /// Per length 1..=16: the largest code of that length (−1 if none).
    maxcode: [i32; 17],
    /// Per length: index into `symbols` of the first code of that length, minus that code.
    offset: [i32; 17],
    symbols: [u8; 256],
}

/// Value bits → signed coefficient (JPEG's EXTEND), `size` 0..=15.
///
/// Branch-free: whether a value is negative is as random as the picture, so a branch on it
/// (what the plain `if` compiled to) mispredicted about every other DC difference.
#[inline(always)]
pub fn extend(v: u32, size: u32) -> i32 {
    let v = v as i32;
    // All ones when v < 2^(size-1), i.e. the value is negative (never for size 0: v = 0).
    let negative = (v - ((1 << size) >> 1)) >> 31;
    v + (negative & ((-1i32 << size) + 1))
}

impl HuffTable {
    /// Build from a DHT's 16 counts and its symbols. `None` for tables no encoder could write
    /// (more codes than fit, more than 256 symbols). The AC lookups (≈ 0.1 ms of work) are
    /// built only for AC tables.
    pub fn new(counts: &[u8; 16], symbols: &[u8], class: Class) -> Option<HuffTable> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total > 256 || symbols.len() != total {
            return None;
        }
        let mut t = HuffTable {
            sym: Box::new([0; FAST_SIZE]),
            ac: Box::new([0; FAST_SIZE]),
            skip: Box::new([0; FAST_SIZE]),
            skip_many: Box::new([0; PACK_SIZE]),
            maxcode: [-1; 17],
            offset: [0; 17],
            symbols: [0; 256],
        };
        t.symbols[..total].copy_from_slice(symbols);
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = u32::from(counts[len as usize - 1]);
            t.offset[len as usize] = k as i32 - code as i32;
            for _ in 0..n {
                if code >= (1 << len) {
                    return None;
                }
                let symbol = u32::from(t.symbols[k]);
                if len <= FAST_BITS {
                    let shift = FAST_BITS - len;
                    for fill in 0..(1u32 << shift) {
                        let idx = ((code << shift) | fill) as usize;
                        t.sym[idx] = ((len << 8) | symbol) as u16;
                        if class == Class::Ac {
                            t.ac[idx] = ac_entry(len, symbol, fill, shift);
                            t.skip[idx] = skip_entry(len, symbol);
                        }
                    }
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                t.maxcode[len as usize] = code as i32 - 1;
            }
            code <<= 1;
        }
        if class == Class::Ac {
            for (prefix, slot) in t.skip_many.iter_mut().enumerate() {
                *slot = pack_entry(&t.maxcode, &t.offset, &t.symbols, prefix as u32);
            }
        }
        Some(t)
    }

    /// Decode one symbol (needs `r.ensure()` first).
    #[inline(always)]
    fn symbol(&self, r: &mut BitReader) -> Result<u32, HuffError> {
        let e = self.sym[(r.word() >> (64 - FAST_BITS)) as usize];
        if e != 0 {
            r.consume(u32::from(e >> 8));
            return Ok(u32::from(e & 0xFF));
        }
        let (len, symbol) = self.long_code(r.peek(16))?;
        r.consume(len);
        Ok(symbol)
    }

    /// (length, symbol) of a code longer than [`FAST_BITS`], from the next 16 bits. Takes the
    /// bits by value so the bit reader stays in registers in the caller.
    #[cold]
    #[inline(never)]
    fn long_code(&self, bits: u32) -> Result<(u32, u32), HuffError> {
        let bits = bits as i32;
        for len in FAST_BITS + 1..=16 {
            let code = bits >> (16 - len);
            if code <= self.maxcode[len as usize] {
                let idx = (self.offset[len as usize] + code) as usize;
                return self
                    .symbols
                    .get(idx)
                    .map(|&s| (len, u32::from(s)))
                    .ok_or(HuffError::BadCode);
            }
        }
        Err(HuffError::BadCode)
    }

    /// A DC difference (needs nothing before: ensures its own bits).
    #[inline(always)]
    pub fn dc_diff(&self, r: &mut BitReader) -> Result<i32, HuffError> {
        r.ensure();
        let size = self.symbol(r)?;
        if size > 15 {
            return Err(HuffError::BadCode);
        }
        Ok(extend(r.take(size), size))
    }

    /// The AC coefficients of one block: those at zigzag positions up to `last` are handed
    /// to `put(k, value)` (k may pass `last` by a run, and even 63 on corrupt data as libjpeg
    /// allows; the caller maps it), the rest are only skipped over.
    #[inline(always)]
    pub fn ac_block(
        &self,
        r: &mut BitReader,
        last: usize,
        mut put: impl FnMut(usize, i32),
    ) -> Result<(), HuffError> {
        let mut k = 1usize;
        while k <= last {
            r.ensure_at_least(FAST_BITS);
            let e = self.ac[(r.word() >> (64 - FAST_BITS)) as usize];
            let kind = (e >> 6) & 3;
            if kind == KIND_COMPLETE {
                r.consume_masked(e);
                k += ((e >> 8) & 15) as usize;
                put(k, (e as i32) >> 16);
                k += 1;
                continue;
            }
            // Longer codes or values: top up (appends below the bits already looked at).
            r.ensure();
            let (run, size);
            if e != 0 {
                r.consume_masked(e);
                if kind == KIND_EOB {
                    return Ok(());
                }
                if kind == KIND_ZRL {
                    k += 16;
                    continue;
                }
                run = (e >> 8) & 15;
                size = (e >> 12) & 15;
            } else {
                let (len, rs) = self.long_code(r.peek(16))?;
                r.consume(len);
                run = rs >> 4;
                size = rs & 15;
                if size == 0 {
                    if run == 15 {
                        k += 16;
                        continue;
                    }
                    return Ok(());
                }
            }
            let value = extend(r.take(size), size);
            k += run as usize;
            put(k, value);
            k += 1;
        }
        while k < 64 {
            r.ensure_at_least(PACK_BITS);
            let m = u32::from(self.skip_many[(r.word() >> (64 - PACK_BITS)) as usize]);
            let (advance, eob) = (((m >> 4) & 127) as usize, ((m >> 11) & 1) as usize);
            // Only when every skipped code still belongs to this block (an EOB needs k < 64
            // after the others; a block may also end without one at k = 64).
            if m != 0 && k + advance + eob <= 64 {
                r.consume(m & 15);
                k += advance;
                if eob != 0 {
                    return Ok(());
                }
                continue;
            }
            r.ensure();
            let e = self.skip[(r.word() >> (64 - FAST_BITS)) as usize];
            if e != 0 {
                r.consume_masked(e);
                k += (e >> 8) as usize;
                continue;
            }
            let (len, rs) = self.long_code(r.peek(16))?;
            let (run, size) = (rs >> 4, rs & 15);
            r.consume(len + size);
            k += match (run, size) {
                (15, 0) => 16,
                (_, 0) => 64,
                _ => run as usize + 1,
            };
        }
        Ok(())
    }
}

/// The [`HuffTable::skip_many`] entry for a [`PACK_BITS`]-bit `prefix`: walk the codes that fit
/// whole (code and value bits) from its start.
fn pack_entry(maxcode: &[i32; 17], offset: &[i32; 17], symbols: &[u8; 256], prefix: u32) -> u16 {
    let (mut used, mut advance, mut eob) = (0u32, 0u32, 0u32);
    'codes: while used < PACK_BITS {
        let left = PACK_BITS - used;
        let window = (prefix << used) & ((1 << PACK_BITS) - 1);
        for len in 1..=left {
            let code = (window >> (PACK_BITS - len)) as i32;
            if code <= maxcode[len as usize] {
                let Some(&rs) = symbols.get((offset[len as usize] + code) as usize) else {
                    break 'codes;
                };
                let (run, size) = (u32::from(rs) >> 4, u32::from(rs) & 15);
                if len + size > left {
                    break 'codes;
                }
                used += len + size;
                match (run, size) {
                    (15, 0) => advance += 16,
                    (_, 0) => {
                        eob = 1;
                        break 'codes;
                    }
                    _ => advance += run + 1,
                }
                continue 'codes;
            }
        }
        break;
    }
    if used == 0 || advance > 127 {
        return 0;
    }
    ((eob << 11) | (advance << 4) | used) as u16
}

/// The skip lookup entry for a code of `len` bits with `symbol`.
fn skip_entry(len: u32, symbol: u32) -> u32 {
    let (run, size) = (symbol >> 4, symbol & 15);
    let advance = match (run, size) {
        (15, 0) => 16,
        (_, 0) => 64,
        _ => run + 1,
    };
    (advance << 8) | (len + size)
}

/// The AC lookup entry for a code of `len` bits with `symbol`, where the `shift` bits after the
/// code in the looked-up prefix are `fill`.
fn ac_entry(len: u32, symbol: u32, fill: u32, shift: u32) -> u32 {
    let (run, size) = (symbol >> 4, symbol & 15);
    if size == 0 {
        let kind = if run == 15 { KIND_ZRL } else { KIND_EOB };
        return (kind << 6) | len;
    }
    if size <= shift {
        let v = fill >> (shift - size);
        let value = extend(v, size) as i16 as u16 as u32;
        return (value << 16) | (run << 8) | (KIND_COMPLETE << 6) | (len + size);
    }
    (size << 12) | (run << 8) | (KIND_NEEDS_VALUE << 6) | len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit writer for test streams (no stuffing needed: the tests avoid FF bytes).
    fn pack(fields: &[(u32, u32)]) -> Vec<u8> {
        let (mut acc, mut n, mut out) = (0u64, 0u32, Vec::new());
        for &(v, bits) in fields {
            acc = (acc << bits) | u64::from(v);
            n += bits;
            while n >= 8 {
                out.push((acc >> (n - 8)) as u8);
                n -= 8;
            }
        }
        if n > 0 {
            out.push(((acc << (8 - n)) as u8) | ((1u8 << (8 - n)) - 1));
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    #[test]
    fn extend_matches_the_standard() {
        assert_eq!(extend(0, 0), 0);
        assert_eq!(extend(0, 1), -1);
        assert_eq!(extend(1, 1), 1);
        assert_eq!(extend(0, 3), -7);
        assert_eq!(extend(3, 3), -4);
        assert_eq!(extend(4, 3), 4);
        assert_eq!(extend(0x3FF, 10), 1023);
        assert_eq!(extend(0, 10), -1023);
    }

    #[test]
    fn oversubscribed_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes
        assert!(HuffTable::new(&counts, &[1, 2, 3], Class::Ac).is_none());
        counts[0] = 2;
        assert!(
            HuffTable::new(&counts, &[1], Class::Ac).is_none(),
            "count/symbol mismatch"
        );
        assert!(HuffTable::new(&counts, &[1, 2], Class::Ac).is_some());
    }

    /// Short codes (combined lookup), codes whose value bits overflow the lookup, codes longer
    /// than the lookup, ZRL and EOB, all in one block.
    #[test]
    fn ac_block_decodes_every_kind_of_code() {
        // Canonical codes: len 2: 0x01 → 00, 0x00 (EOB) → 01; len 3: 0x0A → 100, 0xF0 (ZRL) → 101;
        // len 12: 0x23 → 110000000000 (one 12-bit code, past the 10-bit lookup).
        let mut counts = [0u8; 16];
        counts[1] = 2;
        counts[2] = 2;
        counts[11] = 1;
        let t = HuffTable::new(&counts, &[0x01, 0x00, 0x0A, 0xF0, 0x23], Class::Ac).expect("table");
        let data = pack(&[
            (0b00, 2),
            (1, 1), // +1 at k=1
            (0b100, 3),
            (0b00_0000_0001, 10), // 10 value bits: extend(1, 10) = -1022 at k=2
            (0b101, 3),           // ZRL: k=3..18 zero
            (0b1100_0000_0000, 12),
            (0b101, 3), // run 2, size 3 value 5 at k = 19+2 = 21
            (0b00, 2),
            (0, 1), // -1 at k=22
            (0b01, 2),
        ]);
        let mut r = BitReader::new(&data, 0);
        let mut got = Vec::new();
        t.ac_block(&mut r, 63, |k, v| got.push((k, v)))
            .expect("decode");
        assert_eq!(got, vec![(1, 1), (2, -1022), (21, 5), (22, -1)]);
        assert!(!r.overran());
        assert_eq!(r.finish_segment().map(|f| f.0), Some(0xD9));
    }

    /// Skipping many codes at a time lands on the same positions as one at a time, across
    /// block ends with and without EOB.
    #[test]
    fn skipping_packed_codes_matches_single_codes() {
        // Codes: 0x01 → 0 (1 bit, then 1 value bit), 0x00 EOB → 10, 0xF0 ZRL → 110,
        // 0x12 → 1110 (run 1, 2 value bits).
        let mut counts = [0u8; 16];
        counts[0] = 1;
        counts[1] = 1;
        counts[2] = 1;
        counts[3] = 1;
        let t = HuffTable::new(&counts, &[0x01, 0x00, 0xF0, 0x12], Class::Ac).expect("table");
        // Block 1: 63 × "0 1" (k = 1..63, no EOB: the block ends full).
        // Block 2: ZRL, "1110 11", EOB.  Block 3: EOB.
        let mut fields = vec![(0b01, 2); 63];
        fields.extend_from_slice(&[(0b110, 3), (0b111011, 6), (0b10, 2), (0b10, 2)]);
        let data = pack(&fields);
        let mut r = BitReader::new(&data, 0);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut last = 0;
            t.ac_block(&mut r, 0, |k, _| last = k).expect("block");
            seen.push(last);
        }
        assert!(!r.overran());
        assert_eq!(r.finish_segment().map(|f| f.0), Some(0xD9));
        // ac_block(.., last = 0, ..) skips everything: nothing is put...
        assert_eq!(seen, vec![0, 0, 0]);
        // ...and putting everything (last = 63) sees the same structure.
        let mut r = BitReader::new(&data, 0);
        let mut blocks = Vec::new();
        for _ in 0..3 {
            let mut ks = Vec::new();
            t.ac_block(&mut r, 63, |k, _| ks.push(k)).expect("block");
            blocks.push(ks);
        }
        assert_eq!(blocks[0], (1..64).collect::<Vec<_>>());
        assert_eq!(blocks[1], vec![18]);
        assert!(blocks[2].is_empty());
        assert_eq!(r.finish_segment().map(|f| f.0), Some(0xD9));
    }

    #[test]
    fn an_unknown_code_is_an_error() {
        let mut counts = [0u8; 16];
        counts[0] = 1; // code "0" only; "1..." is not a code
        let t = HuffTable::new(&counts, &[0x00], Class::Ac).expect("table");
        let data = [0xF0, 0x00, 0xFF, 0xD9];
        let mut r = BitReader::new(&data, 0);
        assert_eq!(t.ac_block(&mut r, 63, |_, _| {}), Err(HuffError::BadCode));
        let mut r = BitReader::new(&data, 0);
        assert_eq!(t.dc_diff(&mut r), Err(HuffError::BadCode));
    }
}

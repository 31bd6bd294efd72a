//! Entropy-coded segment reader: MSB-first bits with JPEG byte stuffing (`FF 00` → `FF`).
//!
//! Why its own reader: the refill is the hot loop of a baseline decode. When the next 8 bytes
//! hold no `FF` (almost always) they are loaded as one big-endian word; only near an `FF` does
//! it go byte by byte. At a marker (or the end of the data) it feeds zero bits like libjpeg
//! does, but counts them, so a caller can tell a clean segment end from data that ran out.

/// Bits the caller may need for one Huffman code (≤ 16) plus its value bits (≤ 15).
pub const MAX_CODE_AND_VALUE: u32 = 31;

/// `Copy` on purpose: the decoder keeps it in a local and the cold paths take and return it by
/// value, so its fields can live in registers in the hot loop (no address escapes).
#[derive(Clone, Copy)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte to load.
    pos: usize,
    /// Valid bits, left-aligned; everything below them is zero.
    buf: u64,
    /// Number of valid bits in `buf` (real and fake).
    cnt: u32,
    /// Zero bits appended after a marker or the end of the data (the lowest of the valid bits).
    fake: u32,
    /// `pos` stands on a marker (or the end): no more real bytes in this segment.
    at_marker: bool,
}

/// True when any byte of `w` is `FF`.
#[inline(always)]
fn has_ff(w: u64) -> bool {
    let x = !w;
    (x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080) != 0
}

/// The high bit of every byte of `w` that is `FF`, no false positives (unlike [`has_ff`], which
/// may also flag bytes above an `FF`).
#[inline(always)]
fn ff_bytes(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = !w; // FF → 00
    !(((x & LOW7) + LOW7) | x | LOW7)
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> BitReader<'a> {
        BitReader {
            data,
            pos,
            buf: 0,
            cnt: 0,
            fake: 0,
            at_marker: false,
        }
    }

    /// Make at least [`MAX_CODE_AND_VALUE`] bits available.
    #[inline(always)]
    pub fn ensure(&mut self) {
        if self.cnt < MAX_CODE_AND_VALUE {
            self.refill();
        }
    }

    /// Make at least `n` (≤ [`MAX_CODE_AND_VALUE`]) bits available: the hot loops ask only
    /// for what a table lookup needs, so they refill every four or five codes, not every two.
    #[inline(always)]
    pub fn ensure_at_least(&mut self, n: u32) {
        if self.cnt < n {
            self.refill();
        }
    }

    /// Top up to at least 56 bits. Callers go through [`ensure`](Self::ensure) /
    /// [`ensure_at_least`](Self::ensure_at_least): refilling before every code regardless of
    /// the count was measured slower (0.93× libjpeg-turbo instead of 1.15×).
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(w) = self.next_word() {
            if !has_ff(w) {
                self.append((63 - self.cnt) >> 3, w);
                return;
            }
        }
        *self = self.refilled_bytewise();
    }

    /// The next 8 bytes as one big-endian word, unless fewer are left or a marker was reached.
    #[inline(always)]
    fn next_word(&self) -> Option<u64> {
        if self.at_marker {
            return None;
        }
        let chunk = self.data.get(self.pos..self.pos + 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        Some(u64::from_be_bytes(word))
    }

    /// Append the first `bytes` bytes of `w` (none of them `FF`; `cnt + 8·bytes` ≤ 63).
    #[inline(always)]
    fn append(&mut self, bytes: u32, w: u64) {
        let cnt = self.cnt + 8 * bytes;
        // Keep only whole bytes: bits below `cnt` stay zero.
        self.buf |= (w >> self.cnt) & !(u64::MAX >> cnt);
        self.cnt = cnt;
        self.pos += bytes as usize;
    }

    /// The refill near an `FF`: whole bytes up to it in one step, then the `FF` (stuffed
    /// `FF 00` → one `FF`; a marker or the end → zero bits) on its own, until full.
    #[cold]
    #[inline(never)]
    fn refilled_bytewise(mut self) -> Self {
        while self.cnt <= 56 {
            if let Some(w) = self.next_word() {
                let before_ff = ff_bytes(w).leading_zeros() / 8;
                let bytes = before_ff.min((63 - self.cnt) >> 3);
                if bytes > 0 {
                    self.append(bytes, w);
                    continue;
                }
            }
            let byte = if self.at_marker {
                None
            } else {
                match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
                    (Some(&0xFF), Some(&0x00)) => {
                        self.pos += 2;
                        Some(0xFF)
                    }
                    (Some(&0xFF), _) | (None, _) => None,
                    (Some(&b), _) => {
                        self.pos += 1;
                        Some(b)
                    }
                }
            };
            match byte {
                Some(b) => self.buf |= u64::from(b) << (56 - self.cnt),
                None => {
                    self.at_marker = true;
                    self.fake += 8;
                }
            }
            self.cnt += 8;
        }
        self
    }

    /// The next `n` (1..=16) bits, not consumed. Needs [`ensure`](Self::ensure) first.
    #[inline(always)]
    pub fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    /// The top 64 bits (for table lookups by the caller).
    #[inline(always)]
    pub fn word(&self) -> u64 {
        self.buf
    }

    /// Drop `n` bits (`n` ≤ the bits made available by [`ensure`](Self::ensure)).
    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.cnt && n < 64);
        self.buf <<= n & 63;
        self.cnt = self.cnt.wrapping_sub(n);
    }

    /// Drop the number of bits in the low 6 bits of `e` (a table entry: the shift uses the
    /// entry as is, the hardware masks the count, one instruction less on the critical path).
    #[inline(always)]
    pub fn consume_masked(&mut self, e: u32) {
        self.buf = self.buf.wrapping_shl(e);
        self.cnt = self.cnt.wrapping_sub(e & 63);
    }

    /// Read `n` (0..=16) bits as an unsigned number, without a branch for `n` = 0 (a DC
    /// difference of 0 is common and not predictable).
    #[inline(always)]
    pub fn take(&mut self, n: u32) -> u32 {
        let v = ((self.buf >> 32) >> (32 - n)) as u32;
        self.consume(n);
        v
    }

    /// Some bits that were consumed were not in the data (it ended or hit a marker early).
    #[inline(always)]
    pub fn overran(&self) -> bool {
        self.cnt < self.fake
    }

    /// End of an entropy-coded segment: only the (< 8) padding bits of the last byte may be
    /// left, then a marker. Returns the marker's code (the byte after `FF`, fill bytes skipped)
    /// and positions the reader after it with an empty buffer; `None` when data is left over or
    /// no marker follows.
    #[inline(never)]
    pub fn finish_segment(self) -> Option<(u8, BitReader<'a>)> {
        if self.overran() || self.cnt - self.fake >= 8 {
            return None;
        }
        let mut p = self.pos;
        while self.data.get(p) == Some(&0xFF) && self.data.get(p + 1) == Some(&0xFF) {
            p += 1;
        }
        match (self.data.get(p), self.data.get(p + 1)) {
            (Some(&0xFF), Some(&m)) if m != 0 => Some((m, BitReader::new(self.data, p + 2))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ff_bytes() {
        assert_eq!(ff_bytes(0), 0);
        assert_eq!(ff_bytes(0xFEFF_0100_FF7F_80FF), 0x0080_0000_8000_0080);
        // Bytes above an FF are not flagged (has_ff's borrow would be allowed to).
        assert_eq!(ff_bytes(0x0001_0000_0000_00FF), 0x80);
        for i in 0..8 {
            assert_eq!(ff_bytes(0xFFu64 << (8 * i)), 0x80u64 << (8 * i));
            assert_eq!(ff_bytes(!(0xFFu64 << (8 * i))) & (0x80u64 << (8 * i)), 0);
        }
    }

    #[test]
    fn ff_detection() {
        assert!(!has_ff(0));
        assert!(!has_ff(0xFEFE_FEFE_FEFE_FEFE));
        for i in 0..8 {
            assert!(has_ff(0xFFu64 << (8 * i)), "byte {i}");
            assert!(has_ff((0xFFu64 << (8 * i)) | 0x0101_0101_0101_0101));
        }
    }

    /// Reads bits one at a time from stuffed data and checks them against the unstuffed bytes,
    /// whatever mix of word and byte refills the data forces.
    #[test]
    fn unstuffs_and_stops_at_marker() {
        let payload: Vec<u8> = (0..200u32)
            .map(|i| {
                if i % 7 == 3 {
                    0xFF
                } else {
                    (i * 37 % 251) as u8
                }
            })
            .collect();
        let mut data = Vec::new();
        for &b in &payload {
            data.push(b);
            if b == 0xFF {
                data.push(0);
            }
        }
        data.extend_from_slice(&[0xFF, 0xD9]);
        let mut r = BitReader::new(&data, 0);
        for (i, &b) in payload.iter().enumerate() {
            let mut got = 0u32;
            for _ in 0..8 {
                r.ensure();
                got = (got << 1) | r.take(1);
            }
            assert_eq!(got, u32::from(b), "byte {i}");
        }
        assert!(!r.overran());
        assert_eq!(r.finish_segment().map(|f| f.0), Some(0xD9));
    }

    #[test]
    fn running_past_the_marker_is_noticed() {
        let data = [0x12, 0x34, 0xFF, 0xD9];
        let mut r = BitReader::new(&data, 0);
        r.ensure();
        assert_eq!(r.take(16), 0x1234);
        assert!(!r.overran());
        r.ensure();
        assert_eq!(r.take(3), 0, "zeros after the marker");
        assert!(r.overran());
        assert!(r.finish_segment().is_none());
    }

    #[test]
    fn leftover_bytes_before_the_marker_are_refused() {
        let data = [0x12, 0x34, 0xFF, 0xD0];
        let mut r = BitReader::new(&data, 0);
        r.ensure();
        r.take(4);
        assert!(r.finish_segment().is_none(), "a whole byte unread");
        let mut r = BitReader::new(&data, 0);
        r.ensure();
        r.take(12);
        assert_eq!(
            r.finish_segment().map(|f| f.0),
            Some(0xD0),
            "4 padding bits"
        );
    }
}

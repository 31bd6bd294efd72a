//! TFRecord's masked CRC32C (Castagnoli, hardware-accelerated through the `crc32c` crate).
//!
//! TFRecord stores CRCs "masked" because computing the CRC of a string that itself contains
//! embedded CRCs is weak; the mask (a rotation plus a constant) is TensorFlow's
//! `tensorflow/core/lib/hash/crc32c.h::Mask`. The `crc32c` crate uses SSE4.2 / ARMv8 CRC
//! instructions when present (checked at run time), which is what keeps framing off the profile.

/// The constant TensorFlow adds after rotating (`kMaskDelta`).
const MASK_DELTA: u32 = 0xa282_ead8;

/// Applies TensorFlow's CRC mask: `((crc >> 15) | (crc << 17)) + 0xa282ead8`, wrapping.
#[inline]
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverse of [`mask`]; only used to explain a mismatch (e.g. "stored CRC of ...").
#[inline]
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Masked CRC32C of `data`, as TFRecord stores it after the length field and after the payload.
#[inline]
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask(crc32c::crc32c(data))
}

/// [`masked_crc32c`] of `parts` concatenated, without joining them.
#[inline]
pub fn masked_crc32c_parts(parts: &[&[u8]]) -> u32 {
    mask(parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_parts_equals_crc_of_the_whole() {
        let whole: Vec<u8> = (0..100_000u32).map(|i| (i * 31 / 7) as u8).collect();
        for cut in [0, 1, 63, 4096, 99_999, 100_000] {
            let (a, b) = whole.split_at(cut);
            assert_eq!(
                masked_crc32c_parts(&[a, b]),
                masked_crc32c(&whole),
                "cut {cut}"
            );
            assert_eq!(masked_crc32c_parts(&[a, &[], b]), masked_crc32c(&whole));
        }
        assert_eq!(masked_crc32c_parts(&[]), masked_crc32c(&[]));
    }

    /// Bit-at-a-time CRC32C (reflected polynomial 0x82F63B78), written from the definition so
    /// the hardware path is checked against something that shares no code with it.
    fn crc32c_reference(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn reference_matches_published_check_value() {
        // The CRC-32C "check" value from the CRC catalogue (RFC 3720 appendix B.4 uses the same).
        assert_eq!(crc32c_reference(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c_reference(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn masked_matches_reference_on_many_lengths() {
        // Lengths around the 8/16/64-byte strides that hardware implementations unroll on.
        let data: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..200).chain([255, 256, 257, 1023, 1024, 4095, 4096]) {
            let slice = &data[..len];
            assert_eq!(
                masked_crc32c(slice),
                mask(crc32c_reference(slice)),
                "length {len}"
            );
        }
    }

    #[test]
    fn masked_length_header_of_known_record() {
        // Header of a TFRecord whose payload is 5 bytes long: the masked CRC of the 8-byte LE
        // length. Expected value from the reference implementation and the mask formula written
        // out literally (not through `mask`).
        let len_bytes = 5u64.to_le_bytes();
        let crc = crc32c_reference(&len_bytes);
        #[allow(clippy::manual_rotate)] // spelled as in TF's crc32c.h on purpose
        let expected = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(&len_bytes), expected);
        // Empty payload: the data CRC TF writes for a zero-length record is mask(0).
        assert_eq!(masked_crc32c(&[]), 0xa282_ead8);
    }

    #[test]
    fn unmask_inverts_mask() {
        for crc in [0u32, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
            assert_eq!(unmask(mask(crc)), crc);
        }
    }
}

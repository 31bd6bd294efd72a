//! TFRecord framing: `u64 LE length | u32 masked_crc(length) | payload | u32 masked_crc(payload)`.
//!
//! shard helper implements: a writer that frames a payload into any `Write` and returns
//! `(offset, framed_size)`; a streaming reader over any `Read` yielding `(offset, payload)` or a
//! precise error (bad length CRC, bad data CRC, truncated) carrying the byte offset; and a
//! zero-copy iterator over a byte slice (for mmap'd shards).

//! On-disk formats: TFRecord framing (masked CRC32C), `tf.train.Example`, the DALI-style
//! `.idx` index, LMDB shards, and the manifest. Knows nothing about COCO or GPUs.

pub mod atomic;
pub mod checksum;
pub mod crc;
pub mod example;
pub mod format;
pub mod index;
pub mod lmdb;
pub mod lmdb_read;
pub mod manifest;
pub mod od_example;
pub mod random;
pub mod sha256_batch;
pub mod source;
pub mod tfrecord;
pub mod writer;

use std::path::PathBuf;

/// Errors of the shard layer; each names the file (and byte offset where there is one).
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupted record at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: LMDB error: {message}")]
    Lmdb { path: PathBuf, message: String },
    #[error("{path}: bad index line {line}: {reason}")]
    BadIndex {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

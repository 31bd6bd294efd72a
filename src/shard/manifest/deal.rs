//! How a split's images were dealt to shards, as the manifest records it: the options of
//! `convert --shuffle` and `--shard-multiple`. Both decide the output bytes, so they are part of
//! [`super::ManifestOptions`] (resume and merge refuse to mix runs that differ in them). Absent
//! when unset, so manifests of runs without them keep their exact bytes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DealOptions {
    /// `--shuffle SEED`: images were dealt in this seed's permutation instead of file order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_seed: Option<u64>,
    /// `--shard-multiple N`: every split's shard count was rounded to a multiple of N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_multiple: Option<u32>,
}

//! Shard sinks: write under a `.partial` name, rename only when complete and synced.

//! LMDB shards (lmdb-rkv): zero-padded keys written in order with APPEND, map grown on demand.

//! gpu layer (see lib.rs).

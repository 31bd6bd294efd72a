//! pipeline layer (see lib.rs).

//! report layer (see lib.rs).

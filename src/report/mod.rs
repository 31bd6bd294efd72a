//! report layer (see lib.rs).
pub mod convert;
pub mod verify;

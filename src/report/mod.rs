//! report layer (see lib.rs).
pub mod convert;
pub mod throughput;
pub mod verify;

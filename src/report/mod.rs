//! report layer (see lib.rs).
pub mod convert;
pub mod merge;
pub mod presize;
pub mod throughput;
pub mod verify;

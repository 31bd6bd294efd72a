//! clap argument structs (filled in by the command layer author).
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "dsprep", version, about)]
pub struct Cli {}

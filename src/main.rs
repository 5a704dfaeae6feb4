//! The `paved` binary: parses the command line and hands over to the library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = paved::cli::Cli::parse();
    paved::cli::run(cli)
}

//! The `paved` binary: parses the command line and hands over to the library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // Called as `ade` (on a run's PATH): ADE's runner commands (SPEC 13).
    if std::env::args_os()
        .next()
        .is_some_and(|a| paved::ade::called_as_ade(&a))
    {
        return paved::ade::main();
    }
    let cli = paved::cli::Cli::parse();
    paved::cli::run(cli)
}

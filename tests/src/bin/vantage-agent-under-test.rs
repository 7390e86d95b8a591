//! The `vantage-agent` entry point, built inside this package so that
//! integration tests run it as `CARGO_BIN_EXE_vantage-agent-under-test`
//! (same code as the shipped binary, whose `main` is this one line too).

fn main() -> std::process::ExitCode {
    vantage_agent::cli::entry::main()
}

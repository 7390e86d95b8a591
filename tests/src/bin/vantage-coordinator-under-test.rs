//! The `vantage-coordinator` entry point, built in this package so the
//! cluster harness finds it next to the tests (same code as the shipped
//! binary, whose `main` is this one line too).

fn main() -> std::process::ExitCode {
    vantage_coordinator::daemon::main()
}

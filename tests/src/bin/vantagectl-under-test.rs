//! The `vantagectl` entry point, built in this package for the tests.

fn main() -> std::process::ExitCode {
    vantage_coordinator::ctl::main()
}

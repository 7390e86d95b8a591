//! `vantage-coordinator`: see [`vantage_coordinator::daemon`].

fn main() -> std::process::ExitCode {
    vantage_coordinator::daemon::main()
}

//! `vantagectl`: see [`vantage_coordinator::ctl`].

fn main() -> std::process::ExitCode {
    vantage_coordinator::ctl::main()
}

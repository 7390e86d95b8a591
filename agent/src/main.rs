//! `vantage-agent`: see [`vantage_agent::cli`].

fn main() -> std::process::ExitCode {
    vantage_agent::cli::entry::main()
}

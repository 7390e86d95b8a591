//! The process entry point: argument errors, runtime, output, exit code.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use vantage_common::logging::{self, LogFormat};

use crate::cli::{Cli, Command, EXIT_UNKNOWN, Plan, ProbeArgs, exit_code, render, run};

/// Entry point of `vantage-agent`: parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line naming the bad value; exit 3 like any unknown result.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("vantage-agent: {}", first.trim_start_matches("error: "));
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    logging::init(LogFormat::Text, "warn");
    match cli.command {
        Command::Probe(args) => probe(&args),
    }
}

fn probe(args: &ProbeArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(msg) => {
            eprintln!("vantage-agent: {msg}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    // One thread is plenty for one probe and keeps a one-shot run small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vantage-agent: cannot start runtime: {e}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    let ctx = args.context();
    let outcomes = runtime.block_on(run(&plan, &ctx));
    println!(
        "{}",
        render(&outcomes, args.output, matches!(plan, Plan::Audit(_)))
    );
    ExitCode::from(exit_code(&outcomes))
}

//! The process entry point: argument errors, runtime, output, exit code.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use vantage_common::logging::{self, LogFormat};

use crate::cli::{
    Cli, Command, EXIT_UNKNOWN, LogFormatArg, Plan, ProbeArgs, exit_code, render, run,
};

/// Entry point of `vantage-agent`: parses the command line and runs it.
pub fn main() -> ExitCode {
    vantage_common::logging::quiet_on_closed_stdout();
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
    match cli.command {
        Command::Probe(args) => {
            logging::init(LogFormat::Text, "warn");
            probe(&args)
        }
        Command::Run {
            config,
            log_format,
            otlp_endpoint,
        } => {
            let format = match log_format {
                LogFormatArg::Text => LogFormat::Text,
                LogFormatArg::Json => LogFormat::Json,
            };
            run_agent(&config, format, otlp_endpoint.as_deref())
        }
    }
}

fn run_agent(path: &std::path::Path, format: LogFormat, otlp: Option<&str>) -> ExitCode {
    let config = match crate::runtime::config::AgentConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vantage-agent: {e}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    // One thread: an agent probes hundreds of targets a minute with a small
    // footprint; spool writes go to a blocking pool of two threads.
    let runtime = match one_thread_runtime(2) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // Who we are, for the traces only (the session reports a bad certificate).
    let identity = otlp
        .and_then(|_| vantage_common::tls::ReloadingTls::load(config.tls.clone()).ok())
        .map(|tls| tls.identity());
    // The trace exporter sends on this runtime, so it starts inside it.
    let telemetry = runtime.block_on(async {
        logging::init_traced(
            format,
            "info,h2=warn,tower=warn,hickory_proto=warn,hickory_resolver=warn",
            otlp,
            "vantage-agent",
            identity.as_ref(),
        )
    });
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vantage-agent: {e}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    let outcome = runtime.block_on(async {
        let outcome = crate::runtime::run(config).await;
        telemetry.flush().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vantage-agent: {e:#}");
            ExitCode::FAILURE
        }
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
    let runtime = match one_thread_runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let ctx = args.context();
    let outcomes = runtime.block_on(run(&plan, &ctx));
    println!(
        "{}",
        render(&outcomes, args.output, matches!(plan, Plan::Audit(_)))
    );
    ExitCode::from(exit_code(&outcomes))
}

/// A single-threaded runtime with at most `blocking` threads for file I/O
/// (every extra thread brings its own malloc arena).
fn one_thread_runtime(blocking: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(blocking)
        .build()
        .map_err(|e| {
            eprintln!("vantage-agent: cannot start runtime: {e}");
            ExitCode::from(EXIT_UNKNOWN)
        })
}

//! `dbt-activate`: the binary. Thin: parse, load, call the engine, print, exit.

mod audit;
mod cli;
mod commands;
mod freshness;
mod output;
mod project;
mod reviewed_plan;
mod schedule;
mod state_store;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc rather than the system allocator: a first sync allocates a few strings a cell on
/// its way from the warehouse to the destination, and glibc's malloc and free were about a
/// third of its time (docs/performance.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 0: all good (skips included); 1: a sync failed or a breaker tripped; 2: configuration or
/// fatal error, nothing sent; 3: `plan --detailed-exitcode` found pending changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Error,
    PendingChanges,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::PendingChanges => 3,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(s.code())
    }
}

/// The command's name and log format, for logging and the JSON summary.
fn command_of(command: &Command) -> (&'static str, cli::LogFormat) {
    match command {
        Command::Run(a) => ("run", a.run.common.log_format),
        Command::Plan(a) => ("plan", a.run.common.log_format),
        Command::Ls(a) => ("ls", a.common.log_format),
        Command::Validate(c) => ("validate", c.log_format),
        Command::Debug(c) => ("debug", c.log_format),
        Command::Reset(c) => ("reset", c.log_format),
        Command::History(a) => ("history", a.common.log_format),
        Command::Exposures(a) => ("exposures", a.common.log_format),
        Command::Serve(a) => ("serve", a.run.common.log_format),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let started = std::time::Instant::now();
    let (name, format) = command_of(&cli.command);
    output::init(format);
    if !matches!(cli.command, Command::Serve(_)) {
        project::keep_large_manifests_until_exit();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = anyhow::anyhow!("could not start the async runtime: {e}");
            output::fatal(&e);
            output::print_summary(name, 2, 0.0, Some(&format!("{e:#}")));
            return ExitStatus::Error.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => {
                commands::run::run(args.run, commands::run::Mode::Run { plan: args.plan }).await
            }
            Command::Plan(args) => {
                let mode = commands::run::Mode::Plan {
                    samples: args.samples,
                    out: args.out,
                    detailed_exitcode: args.detailed_exitcode,
                };
                commands::run::run(args.run, mode).await
            }
            Command::Ls(args) => commands::ls::ls(args),
            Command::Validate(args) => commands::validate::validate(args).await,
            Command::Debug(args) => commands::debug::debug(args).await,
            Command::Reset(args) => commands::reset::reset(args),
            Command::History(args) => commands::history::history(args),
            Command::Exposures(args) => commands::exposures::exposures(args),
            Command::Serve(args) => commands::serve::serve(args).await,
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(status) => {
            output::print_summary(name, status.code(), elapsed, None);
            status.into()
        }
        Err(e) => {
            output::fatal(&e);
            output::print_summary(name, 2, elapsed, Some(&format!("{e:#}")));
            ExitStatus::Error.into()
        }
    }
}

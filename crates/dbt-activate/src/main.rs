//! `dbt-activate`: the binary. Thin: parse, load, call the engine, print, exit.

mod audit;
mod cli;
mod commands;
mod output;
mod project;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// 0: all good (skips included); 1: a sync failed or a breaker tripped; 2: configuration or
/// fatal error, nothing sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Error,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        match s {
            ExitStatus::Success => ExitCode::from(0),
            ExitStatus::Failure => ExitCode::from(1),
            ExitStatus::Error => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitStatus::Error.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(args, None).await,
            Command::Plan(args) => commands::run::run(args.run, Some(args.samples)).await,
            Command::Ls(args) => commands::ls::ls(args),
            Command::Validate(args) => commands::validate::validate(args).await,
            Command::Debug(args) => commands::debug::debug(args).await,
            Command::Reset(args) => commands::reset::reset(args),
            Command::History(args) => commands::history::history(args),
        }
    });
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            output::fatal(&e);
            ExitStatus::Error.into()
        }
    }
}

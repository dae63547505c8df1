//! The command line, in dbt's words.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "dbt-activate",
    version = concat!(env!("CARGO_PKG_VERSION"), " (dbt manifest schemas v10, v11, v12)"),
    about = "Sync dbt models to operational tools, gated on dbt's own build and tests."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sync every selected activation whose model built successfully in the last dbt run.
    Run(RunCommandArgs),
    /// Show what a run would send (inserts, updates, deletes, sample rows); sends nothing.
    Plan(PlanArgs),
    /// List activations with destination, mode, schedule and last run.
    Ls(LsArgs),
    /// Check every activation, connection and mapping without sending anything.
    Validate(CommonArgs),
    /// Check the warehouse and every destination connection.
    Debug(CommonArgs),
    /// Forget the state of the selected syncs: their next run is a full resync.
    Reset(CommonArgs),
    /// Show recent runs per sync: status, counts, duration, rejected rows with reasons.
    History(HistoryArgs),
    /// Write a dbt exposure (type application) per activation to a .yml, for dbt docs lineage.
    Exposures(ExposuresArgs),
    /// Run syncs on their schedules and when a new run_results.json shows their models rebuilt;
    /// /healthz and /metrics on a loopback port.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExposuresArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The .yml to write (default: models/activate_exposures.yml in the project).
    #[arg(long, value_name = "YML")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Where /healthz and /metrics listen (loopback by default).
    #[arg(long, env = "DBT_ACTIVATE_LISTEN", default_value = "127.0.0.1:8580")]
    pub listen: std::net::SocketAddr,
    /// How often to look for a new run_results.json and for due schedules.
    #[arg(long, default_value_t = 30)]
    pub poll_seconds: u64,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// text: a table for people; json: one JSON object per sync on stdout, as `dbt ls
    /// --output json` (name, unique_id, depends_on, destination, ...), for orchestrators.
    #[arg(long, value_enum, default_value = "text")]
    pub output: LsOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LsOutput {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Runs shown per sync, newest first.
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// The dbt project folder (with dbt_project.yml and activate.yml).
    #[arg(long, env = "DBT_PROJECT_DIR", default_value = ".")]
    pub project_dir: PathBuf,
    /// Where profiles.yml is (default: the project dir, then ~/.dbt).
    #[arg(long, env = "DBT_PROFILES_DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// The dbt target (default: the profile's `target:`).
    #[arg(long, short = 't', env = "DBT_TARGET")]
    pub target: Option<String>,
    /// dbt's target folder with manifest.json and run_results.json.
    #[arg(long, env = "DBT_TARGET_PATH")]
    pub target_path: Option<PathBuf>,
    /// Where sync state is kept (default: <project>/.dbt-activate).
    #[arg(long, env = "DBT_ACTIVATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// dbt selection syntax: model or sync names, tag:, path:, config.meta.<k>:<v>, +model, model+.
    #[arg(long, short = 's', num_args = 1..)]
    pub select: Vec<String>,
    /// Selectors to leave out.
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// text for people, json for machines (one event per line).
    #[arg(
        long,
        value_enum,
        env = "DBT_ACTIVATE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How many syncs run at once (default: the profile's threads, else 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Send every row, ignoring what the state says was delivered.
    #[arg(long)]
    pub full_refresh: bool,
    /// Also sync models absent from run_results.json, from their existing relations.
    #[arg(long)]
    pub include_unbuilt: bool,
    /// Run the selected syncs whether or not their `schedule` says they are due.
    #[arg(long, env = "DBT_ACTIVATE_IGNORE_SCHEDULE", value_parser = clap::builder::BoolishValueParser::new())]
    pub ignore_schedule: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RunCommandArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Apply exactly the plan written by `plan --out`; a sync whose model data or state
    /// changed since fails and sends nothing.
    #[arg(long, value_name = "PLAN_JSON")]
    pub plan: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Sample rows shown per change kind.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    /// Write the plan (keys per change, fingerprints of the data and the state) to this file,
    /// for `run --plan`.
    #[arg(long, value_name = "PLAN_JSON")]
    pub out: Option<PathBuf>,
    /// Exit 0 when nothing would change, 3 when changes are pending (1 and 2 as usual).
    #[arg(long)]
    pub detailed_exitcode: bool,
}

//! The `stockpulse-processor` command line.

mod bench;
mod dashboard;
mod demo;
mod generate;
mod produce;
mod replay;
mod run;
mod schema;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Duration;
use crate::event::time::parse_rfc3339_millis;

#[derive(Parser, Debug)]
#[command(
    name = "stockpulse-processor",
    version,
    about = "Live retail sales and inventory figures from POS, web, warehouse and marketplace events"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The embedded default: generated store traffic through an in-memory log and the engine,
    /// with a live view of the figures.
    Demo(demo::DemoArgs),
    /// Write realistic, seeded store traffic as NDJSON events (and the reference data it assumes).
    Generate(generate::GenerateArgs),
    /// The processor on Kafka: consume, process and produce exactly once, with state in a
    /// changelog; `/metrics`, `/healthz` and `/readyz` on the HTTP port.
    Run(run::RunArgs),
    /// Write generated store traffic into a pipeline's input topics at the pace of the wall
    /// clock, for the stores and products published on its reference topics.
    Produce(produce::ProduceArgs),
    /// Reprocess recorded NDJSON events into NDJSON outputs (backfill, audit, what-if).
    Replay(replay::ReplayArgs),
    /// The engine benchmark: events per second on one core and memory, on generated traffic.
    Bench(bench::BenchArgs),
    /// Print the JSON Schema of the events this processor reads.
    Schema,
}

/// Disorder options shared by `generate`, `demo`, `bench` and `produce`.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated start time (RFC 3339); default Black Friday 2026, at 05:00 UTC (the demo:
    /// 15:00 UTC, when stores are open in both regions; produce: now).
    #[arg(long, value_parser = parse_time)]
    start: Option<i64>,
    /// Events per second of the whole store network at its busiest hour (simulated time).
    #[arg(long, default_value_t = 40.0, value_parser = parse_positive)]
    peak_rate: f64,
    /// Share of events stamped out of order, within --out-of-order-max.
    #[arg(long, default_value_t = 0.02, value_parser = parse_share)]
    out_of_order_share: f64,
    /// How far out of order such events are stamped at most.
    #[arg(long, default_value = "25s")]
    out_of_order_max: Duration,
    /// Share of events stamped late: 2 to 30 minutes before they arrive.
    #[arg(long, default_value_t = 0.005, value_parser = parse_share)]
    late_share: f64,
    /// Share of events sent twice.
    #[arg(long, default_value_t = 0.01, value_parser = parse_share)]
    duplicate_share: f64,
    /// Share of events corrupted (bad JSON, fields, types or values).
    #[arg(long, default_value_t = 0.002, value_parser = parse_share)]
    malformed_share: f64,
    /// Begin with a stock count of every SKU in every store (the whole key space at once).
    #[arg(long)]
    opening_stocktake: bool,
}

impl TrafficArgs {
    fn options(&self, default_start: i64) -> crate::generator::TrafficOptions {
        crate::generator::TrafficOptions {
            seed: self.seed,
            start: self.start.unwrap_or(default_start),
            peak_events_per_second: self.peak_rate,
            out_of_order_share: self.out_of_order_share,
            out_of_order_max_ms: self.out_of_order_max.as_millis_i64(),
            late_share: self.late_share,
            duplicate_share: self.duplicate_share,
            malformed_share: self.malformed_share,
            opening_stocktake: self.opening_stocktake,
            ..Default::default()
        }
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    parse_rfc3339_millis(text)
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 timestamp (e.g. 2026-11-27T05:00:00Z)"))
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}

fn parse_positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

fn config_or_example(path: Option<&PathBuf>) -> anyhow::Result<crate::config::PipelineConfig> {
    match path {
        Some(path) => Ok(crate::config::PipelineConfig::load(path)?),
        None => Ok(crate::config::PipelineConfig::example()),
    }
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Run(args) => run::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Schema => schema::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockpulse-processor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

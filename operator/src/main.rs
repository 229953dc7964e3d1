//! `stockpulse-operator`: `run` (the controllers), `crdgen` (generated files), `render`
//! (offline preview of what the operator would apply).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stockpulse_operator::render::{Only, Resources, read_resources, render, to_yaml};

#[derive(Parser)]
#[command(name = "stockpulse-operator", version, about = "stockpulse Kubernetes operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (kubeconfig or in-cluster config), with leader election.
    Run(stockpulse_operator::controller::RunOptions),
    /// Copy a region's topics from its regional cluster (SOURCE_* variables) to the
    /// pipeline's cluster (TARGET_* variables), checkpointing in the source; runs until
    /// SIGTERM. The StoreRegion controller runs it as a Deployment.
    Replicate {
        /// Consumer group in the source cluster (holds the checkpoints).
        #[arg(long)]
        group: String,
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// Seconds between checkpoints.
        #[arg(long, default_value_t = 5)]
        checkpoint_seconds: u64,
    },
    /// Write crds/*.yaml, their copies in manifests/ and the Helm chart, and docs/crd-reference.md.
    Crdgen {
        /// Repository root to write under.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Only check: exit 1 and list the stale files instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Print as YAML every Kubernetes object and Kafka topic the operator would apply for
    /// the custom resources in FILEs, without a cluster.
    Render {
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "all")]
        only: Only,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(options) => stockpulse_operator::controller::run_blocking(options),
        Command::Replicate { group, topics, checkpoint_seconds } => replicate(group, topics, checkpoint_seconds),
        Command::Crdgen { root, check } => crdgen(&root, check),
        Command::Render { files, only } => render_files(&files, only),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stockpulse-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn replicate(group: String, topics: Vec<String>, checkpoint_seconds: u64) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use stockpulse_operator::replicator::{Replication, replicate, target_from_env};

    stockpulse_operator::telemetry::init();
    let env = |name: &str| std::env::var(name).ok();
    let replication = Replication {
        source: target_from_env("SOURCE", env).map_err(anyhow::Error::msg)?,
        target: target_from_env("TARGET", env).map_err(anyhow::Error::msg)?,
        topics,
        group,
        checkpoint_every: std::time::Duration::from_secs(checkpoint_seconds.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = stop.clone();
        tokio::spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return,
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            on_signal.store(true, Ordering::Relaxed);
        });
        tracing::info!(group = %replication.group, topics = ?replication.topics, "replicating");
        let copied = replicate(&replication, |_| !stop.load(Ordering::Relaxed)).await?;
        tracing::info!(copied, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn crdgen(root: &std::path::Path, check: bool) -> anyhow::Result<ExitCode> {
    if check {
        let stale = stockpulse_operator::generate::stale_files(root)?;
        for path in &stale {
            eprintln!("stale: {} (run `stockpulse-operator crdgen`)", path.display());
        }
        return Ok(if stale.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    for path in stockpulse_operator::generate::write_all(root)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn render_files(files: &[PathBuf], only: Only) -> anyhow::Result<ExitCode> {
    let mut resources = Resources::default();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        read_resources(&text, &file.display().to_string(), &mut resources)?;
    }
    let rendered = render(&resources, chrono::Utc::now())?;
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", to_yaml(&rendered, only)?);
    Ok(ExitCode::SUCCESS)
}

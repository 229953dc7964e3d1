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
    /// pipeline's cluster (TARGET_* variables), exactly once (a transaction per batch, with
    /// the checkpoints in the target); serves /metrics, /healthz and /readyz; runs until
    /// SIGTERM. The StoreRegion controller runs it as a Deployment.
    Replicate(ReplicateOptions),
    /// Write crds/*.yaml, their copies in manifests/ and the Helm chart, docs/crd-reference.md and
    /// docs/metrics.md.
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
        Command::Replicate(options) => replicate(options),
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

#[derive(clap::Args, Debug)]
struct ReplicateOptions {
    /// Transactional id in the target; a new replicator with the same id fences the old.
    #[arg(long)]
    id: String,
    /// The region copied from: the `origin-region` header given to copied records.
    #[arg(long)]
    region: String,
    /// The origin of records produced in the target: never copied back.
    #[arg(long, default_value = "central")]
    target_region: String,
    #[arg(long = "topic", required = true)]
    topics: Vec<String>,
    /// Compacted checkpoint topic in the target (default: `<id>.checkpoints`).
    #[arg(long)]
    checkpoint_topic: Option<String>,
    /// Records per transaction, at most.
    #[arg(long, default_value_t = 10_000)]
    batch_records: u64,
    /// Milliseconds from a transaction's first record to its commit, at most.
    #[arg(long, default_value_t = 100)]
    batch_ms: u64,
    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
}

fn replicate(options: ReplicateOptions) -> anyhow::Result<ExitCode> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use stockpulse_operator::replicator::health::{Health, router};
    use stockpulse_operator::replicator::{Replication, run, target_from_env};

    stockpulse_operator::telemetry::init();
    let env = |name: &str| std::env::var(name).ok();
    let mut replication = Replication::new(
        target_from_env("SOURCE", env).map_err(anyhow::Error::msg)?,
        target_from_env("TARGET", env).map_err(anyhow::Error::msg)?,
        options.topics,
        options.id,
        options.region,
    );
    replication.target_region = options.target_region;
    if let Some(topic) = options.checkpoint_topic {
        replication.checkpoint_topic = topic;
    }
    if options.batch_records == 0 || options.batch_ms == 0 {
        anyhow::bail!("--batch-records and --batch-ms must be at least 1");
    }
    replication.batch_records = options.batch_records;
    replication.batch_time = Duration::from_millis(options.batch_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    runtime.block_on(async move {
        let health = Arc::new(Health::default());
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", options.http_port))
            .await
            .map_err(|e| anyhow::anyhow!("--http-port {}: {e}", options.http_port))?;
        let app = router(health.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
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
        tracing::info!(id = %replication.id, topics = ?replication.topics, "replicating");
        let copier = tokio::task::spawn_blocking(move || run(&replication, &health, &stop));
        copier.await?;
        tracing::info!("stopped");
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

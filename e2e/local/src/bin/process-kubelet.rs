//! `stockpulse-process-kubelet`: runs the Deployments of some namespaces as local processes
//! and writes their pod and Deployment status back (see `stockpulse_e2e_local::kubelet`).
//!
//! ```text
//! stockpulse-process-kubelet --kubeconfig K --namespace acme-sports --work-dir DIR \
//!     --image ghcr.io/stockpulse/stockpulse-processor=target/debug/stockpulse-processor \
//!     --port-flag ghcr.io/stockpulse/stockpulse-processor=--http-port
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use stockpulse_e2e_local::kubelet::{ImageBinary, Kubelet, Options, split_pair};

#[derive(Parser)]
#[command(name = "stockpulse-process-kubelet", about = "Runs Deployments as local processes (tests only)")]
struct Cli {
    /// The kubeconfig to use.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// A namespace whose Deployments to run (repeat for several).
    #[arg(long = "namespace", required = true)]
    namespaces: Vec<String>,
    /// Where the pods' folders (volumes, logs) and state.json go.
    #[arg(long)]
    work_dir: PathBuf,
    /// REPOSITORY=BINARY: the local binary that stands for an image (its tag ignored).
    #[arg(long = "image", required = true)]
    images: Vec<String>,
    /// REPOSITORY=FLAG: the flag that gives that binary its `http` port.
    #[arg(long = "port-flag")]
    port_flags: Vec<String>,
    /// The node name on the Pod objects.
    #[arg(long, default_value = "process-kubelet")]
    node_name: String,
    /// Milliseconds between passes.
    #[arg(long, default_value_t = 1000)]
    period_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut images = Vec::new();
    for pair in &cli.images {
        let (repository, binary) = split_pair(pair).map_err(anyhow::Error::msg)?;
        // Absolute: each process runs in its pod's folder.
        let binary = std::fs::canonicalize(&binary).map_err(|e| anyhow::anyhow!("--image {pair}: {binary}: {e}"))?;
        anyhow::ensure!(binary.is_file(), "--image {pair}: {} is not a file", binary.display());
        images.push(ImageBinary { repository, binary });
    }
    let mut port_flags = BTreeMap::new();
    for pair in &cli.port_flags {
        let (repository, flag) = split_pair(pair).map_err(anyhow::Error::msg)?;
        port_flags.insert(repository, flag);
    }
    std::fs::create_dir_all(&cli.work_dir)?;
    let options = Options {
        namespaces: cli.namespaces,
        work_dir: cli.work_dir,
        images,
        port_flags,
        node_name: cli.node_name,
        period: Duration::from_millis(cli.period_ms.max(50)),
    };
    // One thread: the processes' parent-death signal follows the thread that started them.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let kubeconfig = Kubeconfig::read_from(&cli.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        eprintln!("process-kubelet: running the Deployments of {:?}", options.namespaces);
        Kubelet::new(client, options).run().await
    })
}

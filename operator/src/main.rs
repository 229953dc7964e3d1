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

//! `stockpulse-processor run --config FILE`: the processor on Kafka (see `runtime`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::config::{Duration, PipelineConfig};
use crate::runtime::{MergeOptions, RunOptions, TRANSACTION_TIMEOUT, run as run_on_kafka};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The pipeline config (the ConfigMap the operator renders, or a file of your own).
    #[arg(long)]
    config: PathBuf,
    /// Names this instance's transactional producer; keep it stable across restarts of one
    /// instance (default: the HOSTNAME, which is the pod name in Kubernetes).
    #[arg(long, env = "STOCKPULSE_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Overrides the config's `http.port` (0 picks a free port).
    #[arg(long)]
    http_port: Option<u16>,
    /// Writes the HTTP port's address to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// HOST:PORT where the other instances reach this one's read API (default: POD_IP and
    /// the HTTP port, else 127.0.0.1).
    #[arg(long, env = "STOCKPULSE_ADVERTISED_ADDRESS")]
    advertised_address: Option<String>,
    /// How often work is committed (a Kafka transaction under exactly-once: then at most 5s,
    /// since a transaction stays open a commit interval and the broker aborts one open longer
    /// than the 10 s transaction timeout).
    #[arg(long, default_value = "100ms")]
    commit_interval: Duration,
    /// How long a task waits for one of its two input partitions that is read to its end (a
    /// producer may be about to write it) before it goes on with the other. A partition known
    /// to hold more records is always waited for, so that both are processed in timestamp
    /// order (Kafka Streams' max.task.idle.ms).
    #[arg(long, default_value = "0s")]
    max_task_idle: Duration,
    /// Records a task buffers of one partition while it waits for the other, before fetching
    /// that partition pauses (resumed at half).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_buffered_records: u32,
    /// Bytes of outputs (estimated) computed while a commit is in flight, held for the next
    /// transaction, before every input pauses until the commit ends: a slow transaction
    /// coordinator then holds up processing instead of growing memory.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1024..=1 << 40))]
    max_held_output_bytes: u64,
    /// How long reading the stores and catalog topics to their end may take at start.
    #[arg(long, default_value = "2m")]
    reference_timeout: Duration,
    /// Attempts of one alert webhook delivery, the first included, before it is
    /// dead-lettered.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    webhook_attempts: u32,
    /// The first wait between attempts of a webhook delivery; it doubles up to 30 s, with
    /// jitter.
    #[arg(long, default_value = "500ms")]
    webhook_backoff: Duration,
    /// How long an output record may wait for the broker's acknowledgement before its delivery
    /// fails (1s to 10s, the transaction timeout). Under exactly-once the transaction is then
    /// aborted and the work since the last commit redone, without a restart.
    #[arg(long, default_value = "10s")]
    delivery_timeout: Duration,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&args.config)?;
    let instance_id = match args.instance_id.or_else(|| std::env::var("HOSTNAME").ok()).filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => format!("pid-{}", std::process::id()),
    };
    let delivery_timeout = std::time::Duration::from_millis(args.delivery_timeout.as_millis());
    if !(std::time::Duration::from_secs(1)..=TRANSACTION_TIMEOUT).contains(&delivery_timeout) {
        anyhow::bail!("--delivery-timeout {delivery_timeout:?}: from 1s to 10s (the transaction timeout)");
    }
    let commit_interval = std::time::Duration::from_millis(args.commit_interval.as_millis());
    if config.processing.exactly_once && commit_interval > TRANSACTION_TIMEOUT / 2 {
        anyhow::bail!(
            "--commit-interval {commit_interval:?}: at most 5s under exactly-once (a transaction stays open a commit \
             interval, and the broker aborts one open past the 10s transaction timeout)"
        );
    }
    let options = RunOptions {
        instance_id,
        http_port: args.http_port,
        commit_interval,
        merge: MergeOptions {
            max_idle: std::time::Duration::from_millis(args.max_task_idle.as_millis()),
            max_buffered: args.max_buffered_records as usize,
            max_held_bytes: usize::try_from(args.max_held_output_bytes).unwrap_or(usize::MAX),
        },
        reference_timeout: std::time::Duration::from_millis(args.reference_timeout.as_millis()),
        address_file: args.address_file,
        advertised_address: args.advertised_address,
        webhook_backoff: crate::runtime::webhook::Backoff {
            base: std::time::Duration::from_millis(args.webhook_backoff.as_millis()),
            cap: std::time::Duration::from_secs(30),
            attempts: args.webhook_attempts,
        },
        delivery_timeout,
    };
    run_on_kafka(config, options).context("stockpulse-processor run")
}

//! `stockpulse-processor produce --config FILE`: generated store traffic into a pipeline's
//! input topics at the pace of the wall clock (see `runtime::traffic`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;

use super::TrafficArgs;
use crate::config::{Duration, PipelineConfig};
use crate::runtime::traffic::{ProduceOptions, produce};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// The pipeline config (the ConfigMap the operator renders, or a file of your own): its
    /// Kafka cluster, credentials and topics.
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// How many events to write (default: until SIGINT or SIGTERM).
    #[arg(long)]
    events: Option<u64>,
    /// How long reading the stores and catalog topics to their end may take.
    #[arg(long, default_value = "30s")]
    reference_timeout: Duration,
    /// When the pipeline's catalog topic holds no product (a new install), publish the example
    /// brand's catalog to it first.
    #[arg(long)]
    publish_example_catalog: bool,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let config = PipelineConfig::load(&args.config)?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).context("cannot install the signal handler")?;
    }
    let options = ProduceOptions {
        // Stamped now unless --start says otherwise (events far from the processor's clock
        // are late or in the future).
        start: args.traffic.start,
        traffic: args.traffic.options(0),
        events: args.events,
        reference_timeout: std::time::Duration::from_millis(args.reference_timeout.as_millis()),
        publish_example_catalog: args.publish_example_catalog,
    };
    let produced = produce(&config, &options, &stop)?;
    println!(
        "{} events written: {} to {}, {} to {}",
        produced.sales + produced.inventory,
        produced.sales,
        config.topic(crate::config::TopicRole::Sales),
        produced.inventory,
        config.topic(crate::config::TopicRole::Inventory),
    );
    Ok(())
}

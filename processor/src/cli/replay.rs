//! `replay`: reprocess a recorded NDJSON events file, one partition in file order. At the end
//! of input the watermark goes to infinity, so every window fires.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::engine::Engine;
use crate::pipeline::Pipeline;
use crate::reference::{ProductRecord, ReferenceUpdate, StoreRecord, read_ndjson};
use crate::sink::NdjsonSink;
use crate::source::{NdjsonSource, StaticReferences};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The pipeline config (YAML or JSON).
    #[arg(long)]
    config: PathBuf,
    /// The recorded events (NDJSON, one event per line).
    #[arg(long)]
    input: PathBuf,
    /// Store reference data (NDJSON store records).
    #[arg(long)]
    stores: Option<PathBuf>,
    /// Product catalog (NDJSON product records).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Directory for aggregates, inventory, alerts, dead-letter and late NDJSON files.
    #[arg(long)]
    out: PathBuf,
    /// Processing time of the replay (RFC 3339), for the future-skew guard; default: now.
    #[arg(long, value_parser = super::parse_time)]
    now: Option<i64>,
}

fn references(args: &ReplayArgs) -> anyhow::Result<Vec<ReferenceUpdate>> {
    let mut updates = Vec::new();
    if let Some(path) = &args.stores {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read stores file {}", path.display()))?;
        let stores: Vec<StoreRecord> = read_ndjson(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
        updates.extend(stores.into_iter().map(ReferenceUpdate::Store));
    }
    if let Some(path) = &args.catalog {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read catalog file {}", path.display()))?;
        let products: Vec<ProductRecord> =
            read_ndjson(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
        updates.extend(products.into_iter().map(ReferenceUpdate::Product));
    }
    Ok(updates)
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let config = crate::config::PipelineConfig::load(&args.config)?;
    let references = references(&args)?;
    let now = args.now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let source = NdjsonSource::open(&args.input)?;
    let sink = NdjsonSink::create(&args.out)?;
    let mut pipeline = Pipeline::new(Engine::new(&config, now), source, sink, 4_096)
        .with_references(Box::new(StaticReferences(references)));
    pipeline.run_to_end(now)?;
    let stats = pipeline.engine.stats();
    eprintln!("replayed {stats}; outputs in {}", args.out.display());
    Ok(())
}

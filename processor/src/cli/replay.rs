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
    /// Replays as `run` computes on this many input partitions: events go to the partition
    /// Kafka's default partitioner gives their `store_id` (producers key by store), and each
    /// partition has its own engine, watermark and lateness, fed in file order. 1: one engine
    /// for the whole file.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    partitions: u32,
}

/// The stores and catalog files as updates. A record that cannot be read is reported on
/// stderr and left out; the rest applies.
fn references(args: &ReplayArgs) -> anyhow::Result<Vec<ReferenceUpdate>> {
    let mut updates = Vec::new();
    if let Some(path) = &args.stores {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read stores file {}", path.display()))?;
        let read = read_ndjson::<StoreRecord>(&text, &path.display().to_string());
        report_left_out("store", &read.errors);
        updates.extend(read.records.into_iter().map(ReferenceUpdate::Store));
    }
    if let Some(path) = &args.catalog {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read catalog file {}", path.display()))?;
        let read = read_ndjson::<ProductRecord>(&text, &path.display().to_string());
        report_left_out("product", &read.errors);
        updates.extend(read.records.into_iter().map(ReferenceUpdate::Product));
    }
    Ok(updates)
}

fn report_left_out(kind: &str, errors: &[String]) {
    for error in errors {
        eprintln!("warning: {kind} record left out: {error}");
    }
    if !errors.is_empty() {
        eprintln!("warning: {} {kind} record(s) left out; the others apply", errors.len());
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let config = crate::config::PipelineConfig::load(&args.config)?;
    let references = references(&args)?;
    let now = args.now.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let source = NdjsonSource::open(&args.input)?;
    let sink = NdjsonSink::create(&args.out)?;
    if args.partitions > 1 {
        return replay_partitioned(&config, &references, now, source, sink, args.partitions, &args.out);
    }
    let mut pipeline = Pipeline::new(Engine::new(&config, now), source, sink, 4_096)
        .with_references(Box::new(StaticReferences(references)));
    pipeline.run_to_end(now)?;
    let stats = pipeline.engine.stats();
    eprintln!("replayed {stats}; outputs in {}", args.out.display());
    Ok(())
}

/// The partition of an event: that of its `store_id` (partition 0 when it has none: such an
/// event is dead-lettered wherever it lands).
fn partition_of_event(payload: &[u8], partitions: u32) -> usize {
    #[derive(serde::Deserialize)]
    struct StoreKey<'a> {
        #[serde(borrow)]
        store_id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<StoreKey<'_>>(payload)
        .map(|k| crate::partitioner::partition_of(k.store_id.as_bytes(), partitions) as usize)
        .unwrap_or(0)
}

/// Hands each partial among `outputs` to the task owning its repartition partition (that
/// of its key, as `run` produces it), in place of the partial.
fn merge_partials(engines: &mut [Engine], outputs: &mut Vec<crate::output::Output>) {
    use crate::engine::{InputRecord, RepartitionRecord};
    use crate::output::Output;
    let topic: std::sync::Arc<str> = std::sync::Arc::from("repartition");
    let mut merged = Vec::with_capacity(outputs.len());
    for output in outputs.drain(..) {
        let Output::Partial(partial) = output else {
            merged.push(output);
            continue;
        };
        let owner = crate::partitioner::partition_of(partial.key().as_bytes(), engines.len() as u32) as usize;
        let payload = serde_json::to_vec(&RepartitionRecord::Partial(Box::new(partial))).unwrap_or_default();
        let input = InputRecord { stream: 0, topic: &topic, partition: owner as i32, offset: 0, payload: &payload };
        engines[owner].merge_input(&input, &mut merged);
    }
    *outputs = merged;
}

fn replay_partitioned(
    config: &crate::config::PipelineConfig,
    references: &[ReferenceUpdate],
    now: i64,
    mut source: NdjsonSource,
    mut sink: NdjsonSink,
    partitions: u32,
    out_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use crate::engine::InputRecord;
    use crate::sink::Sink;
    use crate::source::Source;
    let mut engines: Vec<Engine> = (0..partitions)
        .map(|task| {
            let mut engine = Engine::new(config, now);
            engine.scale_out(task, partitions);
            for update in references {
                engine.apply_reference(update);
            }
            engine.assign(0);
            engine
        })
        .collect();
    let (mut records, mut outputs) = (Vec::new(), Vec::new());
    while !source.is_finished() {
        records.clear();
        source.poll(4_096, &mut records)?;
        for record in &records {
            let partition = partition_of_event(&record.payload, partitions);
            let input = InputRecord {
                stream: 0,
                topic: &record.topic,
                partition: partition as i32,
                offset: record.offset,
                payload: &record.payload,
            };
            engines[partition].process(&input, &mut outputs);
        }
        merge_partials(&mut engines, &mut outputs);
        sink.write(&outputs)?;
        outputs.clear();
    }
    // Every task's windows fire first, then the merges: each merged window fires once, with
    // every task's last partial.
    for engine in &mut engines {
        engine.finish_inputs(&mut outputs);
    }
    merge_partials(&mut engines, &mut outputs);
    for engine in &mut engines {
        engine.finish_merge(&mut outputs);
    }
    sink.write(&outputs)?;
    sink.commit(&[])?;
    let mut total = crate::engine::EngineStats::default();
    for engine in &engines {
        total.add(engine.stats());
    }
    eprintln!("replayed {total} on {partitions} partitions; outputs in {}", out_dir.display());
    Ok(())
}

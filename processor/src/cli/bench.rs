//! `bench`: the engine on generated traffic, one core. Prints events per second for the
//! whole engine path (parse, validate, dedupe, enrich, windows, inventory, alerts) and the
//! process's resident memory as the event count grows over the same key space.

use std::sync::Arc;
use std::time::{Duration as WallDuration, Instant};

use clap::Args;

use crate::config::PipelineConfig;
use crate::engine::{Engine, InputRecord};
use crate::generator::{GeneratedEvent, Traffic, TrafficOptions, brand};
use crate::memory_log::partition_for;
use crate::reference::ReferenceUpdate;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// How many events to process.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Input partitions the events are spread over (by store, like producers key them).
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Events per commit (a flush of changed inventory positions): 100,000 is a commit every
    /// 100 ms at 1M events/s, the commit interval Kafka Streams uses with exactly-once.
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
    /// How many progress rows to print.
    #[arg(long, default_value_t = 10)]
    rows: u64,
    /// Leave out the example's alert policies (one of each rule kind), to measure what the
    /// rules cost.
    #[arg(long)]
    no_alerts: bool,
}

/// (VmRSS, VmHWM) of this process in KiB, from /proc.
fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.batch == 0 || args.partitions == 0 {
        anyhow::bail!("--events, --batch and --partitions must be greater than zero");
    }
    let mut config = PipelineConfig::example();
    if args.no_alerts {
        config.alerts.clear();
    }
    let options = TrafficOptions {
        seed: args.seed,
        out_of_order_share: 0.02,
        duplicate_share: 0.01,
        late_share: 0.0,
        malformed_share: 0.0,
        // Every position exists from the start, so the key space is the same at 1M and 10M.
        opening_stocktake: true,
        ..Default::default()
    };
    let stores = brand::stores();
    let catalog = brand::catalog();
    let mut engine = Engine::new(&config, options.start);
    for store in &stores {
        engine.apply_reference(&ReferenceUpdate::Store(store.clone()));
    }
    for product in &catalog {
        engine.apply_reference(&ReferenceUpdate::Product(product.clone()));
    }
    for p in 0..args.partitions {
        engine.assign(p);
    }
    let windows: Vec<String> = config
        .processing
        .windows
        .iter()
        .map(|w| {
            let dims: Vec<&str> = config.processing.group_by_of(w).iter().map(|d| d.field_name()).collect();
            match w.slide {
                Some(slide) => format!("{} sliding {}/{} by {}", w.name, w.size, slide, dims.join("+")),
                None => format!("{} tumbling {} by {}", w.name, w.size, dims.join("+")),
            }
        })
        .collect();
    let policies: Vec<String> = config
        .alerts
        .iter()
        .map(|p| {
            let rules = [
                p.low_stock.as_ref().map(|_| "lowStock"),
                p.stuck_inventory.as_ref().map(|_| "stuckInventory"),
                p.sales_spike.as_ref().map(|_| "salesSpike"),
                p.amount_outlier.as_ref().map(|_| "amountOutlier"),
            ];
            format!("{} ({})", p.name, rules.into_iter().flatten().collect::<Vec<_>>().join("+"))
        })
        .collect();
    println!("stockpulse engine benchmark");
    println!(
        "  events      {} (seed {}), {} stores, {} SKUs, {} partitions, commit every {}",
        args.events,
        args.seed,
        stores.len(),
        catalog.len(),
        args.partitions,
        args.batch
    );
    println!(
        "  traffic     opening stocktake of all {} positions, then Black Friday trading",
        stores.len() * catalog.len()
    );
    println!("  disorder    2% out of order (within 25s), 1% duplicates");
    println!("  windows     {}", windows.join("; "));
    println!(
        "  alerts      {}",
        if policies.is_empty() { "none (--no-alerts)".to_string() } else { policies.join("; ") }
    );
    println!(
        "  path        parse, validate, dedupe, enrich, windows, inventory, alerts (one thread; generation and output serialization not timed)"
    );
    println!();
    println!(
        "{:>12} {:>14} {:>10} {:>10} {:>11} {:>10} {:>11}",
        "events", "events/s", "rss MiB", "dedupe ids", "positions", "panes", "outputs"
    );

    let topic: Arc<str> = Arc::from(config.topic(crate::config::TopicRole::Sales));
    let mut traffic = Traffic::new(options, &stores, &catalog);
    let mut chunk: Vec<GeneratedEvent> = Vec::with_capacity(args.batch);
    let mut partitions: Vec<usize> = Vec::with_capacity(args.batch);
    let mut offsets = vec![0i64; args.partitions];
    let mut outputs = Vec::new();
    let mut processed: u64 = 0;
    let mut output_count: u64 = 0;
    let mut engine_time = WallDuration::ZERO;
    let mut parse_time = WallDuration::ZERO;
    let row_every = (args.events / args.rows.max(1)).max(1);
    let mut next_row = row_every;
    let mut rss_rows: Vec<(u64, u64)> = Vec::new();
    while processed < args.events {
        chunk.clear();
        let take = (args.events - processed).min(args.batch as u64) as usize;
        chunk.extend(traffic.by_ref().take(take));
        // Which partition a record came from is known on arrival (the producer chose it).
        partitions.clear();
        partitions.extend(chunk.iter().map(|e| partition_for(Some(e.key.as_bytes()), args.partitions) as usize));
        let started = Instant::now();
        // The chunk is polled when its last event has arrived: that is processing time.
        if let Some(last) = chunk.last() {
            engine.tick(last.arrival, &mut outputs);
        }
        for (event, &partition) in chunk.iter().zip(&partitions) {
            let input = InputRecord {
                stream: partition,
                topic: &topic,
                partition: partition as i32,
                offset: offsets[partition],
                payload: &event.payload,
            };
            offsets[partition] += 1;
            engine.process(&input, &mut outputs);
        }
        engine.flush(&mut outputs);
        engine_time += started.elapsed();
        // The first stage alone, for the breakdown (not part of the throughput above).
        let parse_started = Instant::now();
        let valid = chunk.iter().filter(|e| crate::event::parse_event(&e.payload).is_ok()).count();
        parse_time += parse_started.elapsed();
        std::hint::black_box(valid);
        output_count += outputs.len() as u64;
        outputs.clear();
        processed += chunk.len() as u64;
        if processed >= next_row || processed == args.events {
            next_row += row_every;
            let (rss, _) = memory_kib().unwrap_or((0, 0));
            rss_rows.push((processed, rss));
            let state = engine.state_size();
            println!(
                "{:>12} {:>14.0} {:>10.1} {:>10} {:>11} {:>10} {:>11}",
                processed,
                processed as f64 / engine_time.as_secs_f64(),
                mib(rss),
                state.dedupe_ids,
                state.positions,
                state.pane_groups,
                output_count
            );
        }
    }
    let stats = engine.stats();
    let (_, peak) = memory_kib().unwrap_or((0, 0));
    println!();
    println!(
        "throughput  {:.0} events/s on one core ({} events in {:.3} s of engine time)",
        processed as f64 / engine_time.as_secs_f64(),
        processed,
        engine_time.as_secs_f64()
    );
    println!(
        "breakdown   parse and validate alone: {:.0} events/s ({:.0} ns per event of the {:.0} ns in all)",
        processed as f64 / parse_time.as_secs_f64(),
        parse_time.as_nanos() as f64 / processed as f64,
        engine_time.as_nanos() as f64 / processed as f64
    );
    println!("peak rss    {:.1} MiB (VmHWM, whole process)", mib(peak));
    if let (Some(first), Some(last)) = (rss_rows.iter().find(|(n, _)| *n >= 1_000_000), rss_rows.last())
        && last.0 > first.0
    {
        println!(
            "rss growth  {:.1} MiB at {} events -> {:.1} MiB at {} events: {:+.1}%",
            mib(first.1),
            first.0,
            mib(last.1),
            last.0,
            (last.1 as f64 / first.1 as f64 - 1.0) * 100.0
        );
    }
    println!("engine      {stats}");
    println!(
        "event time  {} of simulated traffic",
        crate::config::Duration::from_millis((traffic.clock() - TrafficOptions::default().start).max(0) as u64)
    );
    Ok(())
}

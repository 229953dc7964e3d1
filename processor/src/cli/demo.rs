//! `demo`: the embedded default. Seeded store traffic goes into an in-memory log, the engine
//! reads it like a consumer group, and a live view shows what a merchandiser would see.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as WallDuration, Instant};

use clap::Args;

use super::TrafficArgs;
use super::dashboard::Dashboard;
use crate::config::{Duration, TopicRole};
use crate::engine::Engine;
use crate::event::time::format_rfc3339_millis;
use crate::generator::{Traffic, brand};
use crate::memory_log::{LogRecord, MemoryLog};
use crate::pipeline::Pipeline;
use crate::sink::MemorySink;
use crate::source::{MemoryReferenceSource, MemorySource};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long to run (wall-clock time); Ctrl-C ends it earlier.
    #[arg(long, default_value = "60s")]
    duration: Duration,
    /// Simulated seconds per wall-clock second.
    #[arg(long, default_value_t = 120.0, value_parser = super::parse_positive)]
    speed: f64,
    /// Partitions of the in-memory sales topic.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// A pipeline config to run instead of the embedded example.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    traffic: TrafficArgs,
}

pub fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    if args.partitions == 0 {
        anyhow::bail!("--partitions must be at least 1");
    }
    if args.traffic.peak_rate == 40.0 {
        args.traffic.peak_rate = 300.0; // Black Friday at a brand of this size
    }
    let config = super::config_or_example(args.config.as_ref())?;
    let stores = brand::stores();
    let catalog = brand::catalog();
    let log = MemoryLog::new();
    let sales = config.topic(TopicRole::Sales);
    log.create_topic(&sales, args.partitions);
    for (topic, records) in [
        (
            config.topic(TopicRole::Stores),
            stores.iter().map(|s| (s.store_id.clone(), serde_json::to_vec(s))).collect::<Vec<_>>(),
        ),
        (config.topic(TopicRole::Catalog), catalog.iter().map(|p| (p.sku_id.clone(), serde_json::to_vec(p))).collect()),
    ] {
        log.create_topic(&topic, 1);
        for (key, value) in records {
            log.append(&topic, LogRecord { key: Some(key.into_bytes()), value: Some(value?), headers: vec![] });
        }
    }

    // Black Friday 2026, 16:00 in Berlin and 10:00 in New York.
    let options = args.traffic.options(1_795_791_600_000);
    let start = options.start;
    let mut traffic = Traffic::new(options, &stores, &catalog);
    let names: HashMap<String, String> = catalog.iter().map(|p| (p.sku_id.clone(), p.name.clone())).collect();
    let dashboard = Rc::new(RefCell::new(Dashboard::new(&config, names)));
    let view = dashboard.clone();
    let source = MemorySource::new(log.clone(), config.consumer_group(), std::slice::from_ref(&sales));
    let sink = MemorySink::new(log.clone(), &config);
    let references =
        MemoryReferenceSource::new(log.clone(), &config.topic(TopicRole::Stores), &config.topic(TopicRole::Catalog));
    let mut pipeline = Pipeline::new(Engine::new(&config, start), source, sink, 20_000)
        .with_references(Box::new(references))
        .with_observer(Box::new(move |o| view.borrow_mut().observe(o)));

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Without a handler (one already set), Ctrl-C simply ends the process.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let interactive = std::io::stdout().is_terminal();
    let refresh = if interactive { WallDuration::from_secs(1) } else { WallDuration::from_secs(5) };
    let wall = Instant::now();
    let limit = WallDuration::from_millis(args.duration.as_millis());
    let mut last_frame = Instant::now();
    let mut produced: u64 = 0;
    loop {
        let elapsed = wall.elapsed();
        let done = elapsed >= limit || stop.load(Ordering::SeqCst);
        let sim_now = start + (elapsed.as_secs_f64() * args.speed * 1000.0) as i64;
        while traffic.clock() < sim_now {
            let Some(event) = traffic.next() else { break };
            log.append(
                &sales,
                LogRecord { key: Some(event.key.into_bytes()), value: Some(event.payload), headers: vec![] },
            );
            produced += 1;
        }
        while pipeline.step(sim_now)?.records > 0 {}
        if done || last_frame.elapsed() >= refresh {
            last_frame = Instant::now();
            let header = format!(
                "stockpulse demo · {} · simulated {} (x{}) · wall {:.0}s of {} · {:.0} events/s · Ctrl-C to stop",
                config.name,
                format_rfc3339_millis(sim_now),
                args.speed,
                elapsed.as_secs_f64(),
                args.duration,
                produced as f64 / elapsed.as_secs_f64().max(0.001)
            );
            let frame = dashboard.borrow().render(&header, pipeline.engine.stats(), pipeline.engine.watermark());
            let mut out = std::io::stdout().lock();
            if interactive {
                write!(out, "\x1b[2J\x1b[H{frame}")?;
            } else {
                writeln!(out, "{frame}")?;
            }
            out.flush()?;
        }
        if done {
            break;
        }
        std::thread::sleep(WallDuration::from_millis(20));
    }
    let stats = pipeline.engine.stats();
    println!();
    println!(
        "summary: {stats} in {:.1}s wall ({} simulated)",
        wall.elapsed().as_secs_f64(),
        Duration::from_millis((traffic.clock() - start).max(0) as u64)
    );
    Ok(())
}

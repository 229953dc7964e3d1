//! `generate`: seeded store traffic as NDJSON, and the reference data it assumes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::TrafficArgs;
use crate::generator::{Traffic, TrafficOptions, brand};

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    traffic: TrafficArgs,
    /// How many events to write.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// The NDJSON events file to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the stores the events refer to (NDJSON store records).
    #[arg(long)]
    stores_out: Option<PathBuf>,
    /// Also write the product catalog the events refer to (NDJSON product records).
    #[arg(long)]
    catalog_out: Option<PathBuf>,
}

fn create(path: &Path, what: &str) -> anyhow::Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| format!("cannot create {what} file {}", path.display()))?))
}

/// Writes records as NDJSON.
pub fn write_ndjson<T: Serialize>(path: &Path, what: &str, records: &[T]) -> anyhow::Result<()> {
    let mut file = create(path, what)?;
    for record in records {
        serde_json::to_writer(&mut file, record)?;
        file.write_all(b"\n")?;
    }
    file.flush().with_context(|| format!("cannot write {what} file {}", path.display()))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.out.is_none() && args.stores_out.is_none() && args.catalog_out.is_none() {
        anyhow::bail!("nothing to write: give --out, --stores-out or --catalog-out");
    }
    let stores = brand::stores();
    let catalog = brand::catalog();
    if let Some(path) = &args.stores_out {
        write_ndjson(path, "stores", &stores)?;
    }
    if let Some(path) = &args.catalog_out {
        write_ndjson(path, "catalog", &catalog)?;
    }
    if let Some(path) = &args.out {
        let mut file = create(path, "events")?;
        for event in Traffic::new(args.traffic.options(TrafficOptions::default().start), &stores, &catalog)
            .take(args.events as usize)
        {
            file.write_all(&event.payload)?;
            file.write_all(b"\n")?;
        }
        file.flush().with_context(|| format!("cannot write events file {}", path.display()))?;
    }
    Ok(())
}

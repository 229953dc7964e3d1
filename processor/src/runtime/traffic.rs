//! `produce`: generated store traffic written to a pipeline's input topics at the pace of the
//! wall clock, for the stores and products published on its reference topics, so that a new
//! install shows figures arriving. Events are stamped with the time they are written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::{PipelineConfig, TopicRole};
use crate::generator::{Traffic, TrafficOptions, brand, input_role};

use super::metrics::Metrics;
use super::worker::{DeliveryContext, send};
use super::{RunError, client, load_references};

/// What `produce` writes.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// The traffic's shape; its `start` is the wall clock's now when `None`.
    pub traffic: TrafficOptions,
    pub start: Option<i64>,
    /// How many events to write; `None` until stopped.
    pub events: Option<u64>,
    /// How long reading the stores and catalog topics to their end may take.
    pub reference_timeout: Duration,
    /// When the catalog topic holds no product, publish the example brand's catalog to it
    /// first (a new install has none).
    pub publish_example_catalog: bool,
}

/// Events written, by input topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub sales: u64,
    pub inventory: u64,
}

/// Writes generated events until `options.events` are written or `stop` is set; every
/// event is delivered (or the error returned) before it returns.
pub fn produce(config: &PipelineConfig, options: &ProduceOptions, stop: &AtomicBool) -> Result<Produced, RunError> {
    let client = client::base_config(&config.kafka)?;
    let metrics = Metrics::new();
    let references = load_references(config, &client, options.reference_timeout, &metrics, &mut Vec::new())?;
    if references.stores.is_empty() {
        return Err(RunError::Reference(format!(
            "no store is published on topic {} (apply a StoreRegion that selects this pipeline first)",
            config.topic(TopicRole::Stores)
        )));
    }
    let stores: Vec<_> = references.stores.values().cloned().collect();
    let mut products: Vec<_> = references.products.values().cloned().collect();
    drop(references);
    let producer: BaseProducer<DeliveryContext> = super::producer_config(&client)
        .create_with_context(DeliveryContext::default())
        .map_err(|e| RunError::kafka("creating the producer", e))?;
    if products.is_empty() {
        let catalog = config.topic(TopicRole::Catalog);
        if !options.publish_example_catalog || config.processing.enrichment.catalog_file.is_some() {
            return Err(RunError::Reference(format!(
                "no product is published on topic {catalog} (or in processing.enrichment.catalogFile); \
                 --publish-example-catalog publishes the example brand's to the topic"
            )));
        }
        products = brand::catalog();
        for product in &products {
            let value = serde_json::to_vec(product).map_err(|e| RunError::Reference(e.to_string()))?;
            send(&producer, BaseRecord::to(&catalog).key(&product.sku_id).payload(&value))?;
        }
        tracing::info!(products = products.len(), topic = %catalog, "example catalog published");
    }
    let start = options.start.unwrap_or_else(super::now_millis);
    let traffic = Traffic::new(TrafficOptions { start, ..options.traffic.clone() }, &stores, &products);
    tracing::info!(stores = stores.len(), products = products.len(), "reference data loaded; producing");

    let (sales, inventory) = (config.topic(TopicRole::Sales), config.topic(TopicRole::Inventory));
    let mut produced = Produced::default();
    let began = Instant::now();
    let mut reported = Instant::now();
    for event in traffic.take(options.events.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))) {
        // Written when its simulated arrival comes on the wall clock.
        let due = Duration::from_millis(u64::try_from(event.arrival.saturating_sub(start)).unwrap_or(0));
        while let Some(wait) = due.checked_sub(began.elapsed()).filter(|w| !w.is_zero()) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let role = input_role(&event.payload);
        let topic = if role == TopicRole::Sales { &sales } else { &inventory };
        send(&producer, BaseRecord::to(topic).key(&event.key).payload(&event.payload))?;
        match role {
            TopicRole::Sales => produced.sales += 1,
            _ => produced.inventory += 1,
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            reported = Instant::now();
            tracing::info!(sales = produced.sales, inventory = produced.inventory, "events written");
        }
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| RunError::kafka("delivering the last events", e))?;
    match producer.context().failed.load(Ordering::Relaxed) {
        0 => Ok(produced),
        failed => Err(RunError::EventsNotDelivered(failed)),
    }
}

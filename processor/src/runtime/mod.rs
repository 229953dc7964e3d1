//! The processor on Kafka: `stockpulse-processor run --config FILE`.
//!
//! One consumer group over the `sales` and `inventory` topics; one task per input partition
//! number, each with its own engine (see [`task`]); one transactional producer per instance
//! (exactly-once: outputs, changelog and input offsets in one transaction, fenced by the
//! group's metadata); reference data read to its end before the first event and followed
//! live ([`references`]); `/metrics`, `/healthz` and `/readyz` on the HTTP port ([`http`]).
//! The engine stays pure: this module is where Kafka, the clock and signals meet it.
//!
//! Windows grouped without `store` get events from every task: with more than one input
//! partition each task sends its partial figures through the repartition topic to the task
//! that owns the group, which merges them (see `engine::merge`).

mod client;
mod committer;
pub mod http;
pub mod limits;
pub mod metrics;
mod query;
pub mod read_api;
mod references;
mod restore;
mod task;
pub mod traffic;
pub mod webhook;

pub use query::ADDRESS_PREFIX;
pub use task::MergeOptions;
pub use worker::cached_high_watermark;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::{PipelineConfig, TopicRole};
use crate::reference::{ProductRecord, ReferenceUpdate, read_ndjson};

use http::Health;
use metrics::Metrics;
use references::References;
use worker::{RebalanceContext, Worker};

/// Why `run` stopped; each names its cause. All but a clean shutdown exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("config: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Kafka { what: String, source: KafkaError },
    #[error("topic {0} does not exist (the operator creates it; check the pipeline's topics)")]
    MissingTopic(String),
    #[error("fenced: another instance took over this one's transactions ({0}); exiting so that it alone writes")]
    Fenced(String),
    #[error("{0} output record(s) were not delivered; their input offsets were not committed")]
    Delivery(u64),
    #[error("{0} generated event(s) were not delivered to the input topics (the log says why)")]
    EventsNotDelivered(u64),
    #[error("reference data: {0}")]
    Reference(String),
    #[error("restoring task {partition}: {message}")]
    Restore { partition: i32, message: String },
    #[error("HTTP server: {0}")]
    Http(String),
    /// The producer takes no more records: its transaction failed (a record's delivery failed,
    /// and the transaction must be aborted), or an idempotent producer failed for good.
    #[error("producing a record: the producer takes no more records ({0}); its transaction failed")]
    TransactionFailed(KafkaError),
    #[error(
        "the commit thread stopped without an answer: the open transaction is in doubt; exiting so that a restart resumes from what was committed"
    )]
    CommitInDoubt,
}

impl RunError {
    pub fn kafka(what: &str, source: KafkaError) -> Self {
        RunError::Kafka { what: what.to_string(), source }
    }
}

/// What `run` needs besides the config.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Names this instance's transactional producer: stable across restarts of one pod (its
    /// name), so a restarted instance fences its own predecessor at once.
    pub instance_id: String,
    /// Overrides the config's HTTP port (0: any free port).
    pub http_port: Option<u16>,
    /// How often work is committed (Kafka Streams' exactly-once default: 100 ms).
    pub commit_interval: Duration,
    /// How a task merges its two partitions in timestamp order.
    pub merge: task::MergeOptions,
    /// How long reference data may take to load before `run` gives up.
    pub reference_timeout: Duration,
    /// Written with the HTTP port's address once listening (tests read it).
    pub address_file: Option<PathBuf>,
    /// `HOST:PORT` where the other instances reach this one's read API (default: `POD_IP`
    /// and the HTTP port, else 127.0.0.1 and the port).
    pub advertised_address: Option<String>,
    /// How alert webhook deliveries are retried.
    pub webhook_backoff: webhook::Backoff,
    /// How long an output record may wait for the broker's acknowledgement before its
    /// delivery fails (librdkafka's `message.timeout.ms`); at most [`TRANSACTION_TIMEOUT`].
    pub delivery_timeout: Duration,
}

/// How long a transaction may stay open before the broker aborts it (`transaction.timeout.ms`;
/// Kafka Streams' exactly-once default). The transaction of an instance that died unseen (a
/// SIGKILL, a lost node) holds `read_committed` readers of every partition it wrote, the
/// changelog and the repartition topic included, until the broker aborts it: a restore and
/// the merged windows wait at most this long for it. A restart under the same instance id
/// fences it at once.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Whether the pipeline needs the repartition stage on `partitions` input partitions: with
/// more than one task, the tasks hear each other's watermarks through it (one event-time clock
/// for the pipeline: a quiet task closes its windows with the rest), and a window grouped
/// without `store`, which gets events from every task, is merged through it.
pub fn needs_repartition(partitions: usize) -> bool {
    partitions > 1
}

/// Task `p` reads sales p and inventory p (the same stores) and keeps its state in changelog
/// partition p: the inventory topic needs as many partitions as the sales topic, the
/// changelog at least as many.
pub fn check_co_partitioning(
    topics: &worker::Topics,
    sales: usize,
    inventory: usize,
    changelog: usize,
    repartition: Option<usize>,
) -> Result<(), RunError> {
    if inventory != sales {
        return Err(RunError::Config(format!(
            "topic {} has {inventory} partitions and {} has {sales}: they must be equal, since a task \
             reads sales p and inventory p together (producers key both by store)",
            topics.inventory, topics.sales
        )));
    }
    if changelog < sales {
        return Err(RunError::Config(format!(
            "changelog topic {} has {changelog} partitions, fewer than the {sales} of {}: task p keeps its \
             state in changelog partition p",
            topics.changelog, topics.sales
        )));
    }
    if let (Some(name), Some(partitions)) = (&topics.repartition, repartition)
        && partitions != sales
    {
        return Err(RunError::Config(format!(
            "repartition topic {name} has {partitions} partitions and {} has {sales}: they must be equal, \
             since task p merges the partials of repartition partition p",
            topics.sales
        )));
    }
    Ok(())
}

/// Runs until SIGTERM or SIGINT (then commits, leaves the group and returns `Ok`), or a fatal
/// error.
pub fn run(config: PipelineConfig, options: RunOptions) -> Result<(), RunError> {
    let config = Arc::new(config);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .map_err(|e| RunError::Config(format!("cannot install the signal handler: {e}")))?;
    }
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    health.beat();
    let port = options.http_port.unwrap_or(config.http.port);
    let api: read_api::ReadApi = Arc::new(std::sync::OnceLock::new());
    let default_threshold =
        config.alerts.iter().find_map(|a| a.low_stock.as_ref().map(|rule| rule.threshold)).unwrap_or(0);
    let address = http::serve(port, health.clone(), metrics.clone(), read_api::routes(api.clone(), default_threshold))?;
    let advertised = options.advertised_address.clone().unwrap_or_else(|| {
        match std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()) {
            Some(ip) if ip.contains(':') => format!("[{ip}]:{}", address.port()),
            Some(ip) => format!("{ip}:{}", address.port()),
            None => format!("127.0.0.1:{}", address.port()),
        }
    });
    if let Some(file) = &options.address_file {
        std::fs::write(file, address.to_string())
            .map_err(|e| RunError::Config(format!("cannot write {}: {e}", file.display())))?;
    }
    tracing::info!(%address, "HTTP port listening");

    let client = client::base_config(&config.kafka)?;
    let group = config.consumer_group().to_string();
    let relay_stop = Arc::new(AtomicBool::new(false));
    let relay = webhook::spawn(&config, &client, metrics.clone(), relay_stop.clone(), options.webhook_backoff)?;
    let result = run_with(&config, &options, client, group, &stop, &metrics, &health, api, &advertised);
    relay_stop.store(true, Ordering::SeqCst);
    if let Some(relay) = relay {
        let _ = relay.join();
    }
    result
}

/// `run` after the HTTP port and the webhook relay are up.
#[allow(clippy::too_many_arguments)]
fn run_with(
    config: &Arc<PipelineConfig>,
    options: &RunOptions,
    client: rdkafka::ClientConfig,
    group: String,
    stop: &Arc<AtomicBool>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    api: read_api::ReadApi,
    advertised: &str,
) -> Result<(), RunError> {
    // Reference data first: no event is processed before every store and product is known.
    let mut updates: Vec<ReferenceUpdate> = Vec::new();
    let mut references = load_references(config, &client, options.reference_timeout, metrics, &mut updates)?;
    health.references_loaded.store(true, Ordering::Relaxed);
    tracing::info!(stores = references.stores.len(), products = references.products.len(), "reference data loaded");

    // The topics, checked before the worker exists: it subscribes to them.
    let metadata_reader: BaseConsumer =
        client.clone().create().map_err(|e| RunError::kafka("creating the metadata reader", e))?;
    let mut topics = worker::Topics::of(config);
    let partitions = input_partitions(&metadata_reader, &topics.sales)?;
    if needs_repartition(partitions) {
        topics = topics.with_repartition(config);
    }
    let repartition = match &topics.repartition {
        Some(name) => Some(input_partitions(&metadata_reader, name)?),
        None => None,
    };
    check_co_partitioning(
        &topics,
        partitions,
        input_partitions(&metadata_reader, &topics.inventory)?,
        input_partitions(&metadata_reader, &topics.changelog)?,
        repartition,
    )?;
    for topic in topics.written() {
        // Outputs, a policy's own Kafka sinks, changelog, repartition: the operator creates
        // them with the pipeline; a missing one (deleted) is named before anything is read.
        input_partitions(&metadata_reader, topic)?;
    }
    drop(metadata_reader);
    let subscription: Vec<String> = topics.inputs().into_iter().map(String::from).collect();
    let limits = limits::read(&client, &topics.written(), Duration::from_secs(30))?;
    for (topic, limit) in limits.small() {
        tracing::info!(
            topic,
            max_message_bytes = limit,
            "topic takes smaller records than the client sends: records and batches are cut to fit"
        );
    }

    let exactly_once = config.processing.exactly_once;
    let mut producer_config = producer_config(&client);
    producer_config
        .set("batch.size", limits.batch_size().to_string())
        .set("message.timeout.ms", options.delivery_timeout.as_millis().to_string());
    if exactly_once {
        producer_config
            .set("transactional.id", format!("{group}-{}", options.instance_id))
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string());
    }
    let sales_topic = topics.sales.clone();

    let tasks = u32::try_from(partitions).map_err(|_| RunError::Config(format!("{partitions} partitions")))?;
    let mut worker = Worker::new(
        config.clone(),
        topics,
        tasks,
        client.clone(),
        producer_config,
        limits,
        metrics.clone(),
        health.clone(),
        options.merge,
    )?;
    let table: Vec<ReferenceUpdate> = references.snapshot().collect();
    worker.apply_references(&table, table.clone().into_iter());
    let worker = Arc::new(Mutex::new(worker));
    let queries = query::Queries::new(worker.clone(), &client, &group, &sales_topic, tasks, advertised.to_string())?;
    // The worker exists: the read API answers from now on (set once, here).
    let _ = api.set(Arc::new(queries));

    let consumer: BaseConsumer<RebalanceContext> = client
        .clone()
        .set("group.id", &group)
        // Static membership: an instance restarted under its name (a container restart keeps
        // the pod name) gets its partitions back at once, without a rebalance of the group.
        .set("group.instance.id", &options.instance_id)
        // The group's description carries each member's read-API address.
        .set("client.id", format!("{}{advertised}", query::ADDRESS_PREFIX))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // Range assignment puts sales p and inventory p on one instance (cooperative-sticky
        // assigns each topic's partitions on their own, which would split a task's stores).
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        .set("statistics.interval.ms", "5000")
        // Prefetching that keeps up with 100,000 events/s: librdkafka counts queued records
        // over the whole consumer queue, and once past queued.min.messages it backs every
        // partition off for fetch.queue.backoff.ms (1 s by default), long enough to drain the
        // queue and leave the loop waiting (the Kafka benchmark showed 0.4 s of 2 idle).
        .set("fetch.queue.backoff.ms", "10")
        .set("max.partition.fetch.bytes", "4194304")
        // Fewer, fuller fetches: with the defaults (1 byte, up to 500 ms) the broker answers
        // each fetch as soon as one record of the 8 to 12 input partitions arrives, thousands
        // of requests a second at 100,000 events/s. Waiting for 64 KB, 10 ms at most, costs a
        // record at most 10 ms and leaves the broker's CPU to the records (the Kafka benchmark
        // at 100,000 events/s: 82,400 events/s processed before, 90,700-94,400 after).
        .set("fetch.min.bytes", "65536")
        .set("fetch.wait.max.ms", "10")
        .create_with_context(RebalanceContext { worker: worker.clone(), metrics: metrics.clone() })
        .map_err(|e| RunError::kafka("creating the consumer", e))?;
    let subscription: Vec<&str> = subscription.iter().map(String::as_str).collect();
    consumer.subscribe(&subscription).map_err(|e| RunError::kafka("subscribing to the input topics", e))?;

    let inputs = Inputs { topic: sales_topic, partitions: tasks };
    let result = process_loop(&consumer, &worker, &mut references, stop, options, health, metrics, &inputs);
    // Leave cleanly: the last work is committed (or, after a failure, left to be redone).
    if result.is_ok() {
        let commit = with_worker(&worker, |w| w.commit(&consumer));
        consumer.unsubscribe();
        let _ = consumer.poll(Duration::from_millis(100)); // runs the revocation
        commit?;
        if let Ok(worker) = worker.lock() {
            worker.flush_producer();
        }
        tracing::info!("stopped: work committed, group left");
    }
    result
}

/// The producer settings of `run` and `produce`: idempotent, Java's key partitioning, and
/// LZ4-compressed batches.
fn producer_config(client: &rdkafka::ClientConfig) -> rdkafka::ClientConfig {
    let mut config = client.clone();
    config
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        // Outputs and changelog are three records an event: compressed batches cost the broker
        // far less to take in, store and serve (the Kafka benchmark on one machine: 60,000-64,000
        // events/s processed at 100,000 without, 81,000-89,000 with; LZ4 is the cheapest codec
        // to compress).
        .set("compression.type", "lz4");
    config
}

/// The stores and products, read to the end of the reference topics (the products from
/// `processing.enrichment.catalogFile` instead, when it is set); `updates` gets them all.
fn load_references(
    config: &PipelineConfig,
    client: &rdkafka::ClientConfig,
    timeout: Duration,
    metrics: &Metrics,
    updates: &mut Vec<ReferenceUpdate>,
) -> Result<References, RunError> {
    let catalog_file = config.processing.enrichment.catalog_file.clone();
    let mut references = References::new(
        client,
        &config.topic(TopicRole::Stores),
        catalog_file.is_none().then(|| config.topic(TopicRole::Catalog)).as_deref(),
        Duration::from_secs(30),
    )?;
    if let Some(path) = &catalog_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::Config(format!("processing.enrichment.catalogFile: cannot read {path}: {e}")))?;
        let read = read_ndjson::<ProductRecord>(&text, path);
        for error in &read.errors {
            metrics.reference_errors.get_or_create(&vec![("kind", "product".to_string())]).inc();
            tracing::warn!(error = %error, "catalog file record left out");
        }
        for product in read.records {
            references.products.insert(product.sku_id.clone(), product);
        }
    }
    references.load(timeout, metrics, updates)?;
    Ok(references)
}

fn input_partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<usize, RunError> {
    topic_partitions(consumer, topic, Duration::from_secs(30))
}

/// The partitions of `topic`, asked of the cluster within `timeout`.
fn topic_partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, RunError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| RunError::kafka(&format!("reading metadata of topic {topic}"), e))?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(t.partitions().len()),
        _ => Err(RunError::MissingTopic(topic.to_string())),
    }
}

fn with_worker<T>(worker: &Mutex<Worker>, f: impl FnOnce(&mut Worker) -> Result<T, RunError>) -> Result<T, RunError> {
    let mut guard = worker.lock().map_err(|_| RunError::Config("worker lock poisoned".into()))?;
    if let Some(fatal) = guard.fatal.take() {
        return Err(fatal);
    }
    f(&mut guard)
}

/// How long the loop reads changelogs back each turn while tasks restore.
const RESTORE_STEP: Duration = Duration::from_millis(100);
/// How often the loop checks that the input topics keep the partitions the tasks were made for.
const PARTITIONS_CHECK: Duration = Duration::from_secs(30);

/// The sales topic and its partitions when the instance started (the pipeline's tasks).
struct Inputs {
    topic: String,
    partitions: u32,
}

impl Inputs {
    /// Ends the run when the topic has gained partitions: stores moved to tasks that do not
    /// hold their state. (A metadata request that fails says nothing; the next check asks again.)
    fn check<C: rdkafka::consumer::ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        // Briefly: the loop waits for the answer (a broker away answers nothing, and the next
        // check asks again).
        match topic_partitions(consumer, &self.topic, Duration::from_secs(2)) {
            Ok(now) if now != self.partitions as usize => {
                let now = u32::try_from(now).unwrap_or(u32::MAX);
                Err(RunError::Config(task::partitions_changed(self.partitions, now)))
            }
            _ => Ok(()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn process_loop(
    consumer: &BaseConsumer<RebalanceContext>,
    worker: &Mutex<Worker>,
    references: &mut References,
    stop: &AtomicBool,
    options: &RunOptions,
    health: &Health,
    metrics: &Metrics,
    inputs: &Inputs,
) -> Result<(), RunError> {
    let mut updates = Vec::new();
    let mut backoff = Duration::from_millis(100);
    let mut last_tick = Instant::now();
    let mut last_partitions_check = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        health.beat();
        if last_partitions_check.elapsed() >= PARTITIONS_CHECK {
            last_partitions_check = Instant::now();
            inputs.check(consumer)?;
        }
        references.poll(metrics, &mut updates)?;
        if !updates.is_empty() {
            let table: Vec<ReferenceUpdate> = references.snapshot().collect();
            with_worker(worker, |w| {
                w.apply_references(&updates, table.into_iter());
                Ok(())
            })?;
            updates.clear();
        }
        // Poll outside the worker's lock: rebalance callbacks take it. Briefly while a commit
        // is in flight or tasks restore, so that the loop comes back to them soon when no
        // record comes.
        let busy = with_worker(worker, |w| Ok(w.committing() || w.restoring()))?;
        let polled = consumer.poll(Duration::from_millis(if busy { 5 } else { 50 }));
        match polled {
            None => {}
            Some(Ok(message)) => {
                with_worker(worker, |w| w.process(consumer, &message))?;
                if backoff > Duration::from_millis(100) {
                    // Records flow again: the error shown in /readyz is over.
                    health.set_kafka_error(None);
                }
                backoff = Duration::from_millis(100);
                // Take what is already fetched without going round the whole loop, until a
                // commit is due: a commit per handful of records would leave no time to
                // process when commits take longer than their interval.
                while !with_worker(worker, |w| Ok(w.commit_due(options.commit_interval)))? {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(message)) => with_worker(worker, |w| w.process(consumer, &message))?,
                        Some(Err(e)) => {
                            on_consumer_error(e, health, metrics)?;
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(e)) => {
                on_consumer_error(e, health, metrics)?;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        let now = crate::runtime::now_millis();
        with_worker(worker, |w| {
            w.poll_producer();
            w.restore_step(consumer, RESTORE_STEP)?;
            if last_tick.elapsed() >= Duration::from_millis(100) {
                w.tick(consumer, now)?;
                last_tick = Instant::now();
            }
            w.commit_step(consumer, options.commit_interval)
        })?;
    }
    Ok(())
}

/// A consumer error: fatal ones end the run, the rest are counted, shown in `/readyz` and
/// retried with backoff.
fn on_consumer_error(error: KafkaError, health: &Health, metrics: &Metrics) -> Result<(), RunError> {
    metrics.kafka_errors.get_or_create(&vec![("operation", "consume".to_string())]).inc();
    if let Some(code) = error.rdkafka_error_code() {
        use rdkafka::types::RDKafkaErrorCode as C;
        if matches!(
            code,
            C::Fatal
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
        ) {
            return Err(RunError::kafka("consuming", error));
        }
    }
    tracing::warn!(error = %error, "consumer error; retrying");
    health.set_kafka_error(Some(error.to_string()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_changelog_must_be_co_partitioned() {
        let config = PipelineConfig::from_text("name: p\n", "test").unwrap();
        let topics = worker::Topics::of(&config);
        assert!(check_co_partitioning(&topics, 6, 6, 6, None).is_ok());
        assert!(check_co_partitioning(&topics, 6, 6, 8, None).is_ok());
        assert_eq!(
            check_co_partitioning(&topics, 6, 4, 6, None).unwrap_err().to_string(),
            "config: topic p.inventory has 4 partitions and p.sales has 6: they must be equal, since a task \
             reads sales p and inventory p together (producers key both by store)"
        );
        assert!(
            check_co_partitioning(&topics, 6, 6, 3, None)
                .unwrap_err()
                .to_string()
                .contains("changelog topic p.changelog has 3")
        );
        let topics = topics.with_repartition(&config);
        assert!(check_co_partitioning(&topics, 6, 6, 6, Some(6)).is_ok());
        assert_eq!(
            check_co_partitioning(&topics, 6, 6, 6, Some(3)).unwrap_err().to_string(),
            "config: repartition topic p.repartition has 3 partitions and p.sales has 6: they must be equal, \
             since task p merges the partials of repartition partition p"
        );
    }

    #[test]
    fn several_partitions_need_the_repartition_stage() {
        assert!(!needs_repartition(1));
        assert!(needs_repartition(2));
        assert!(needs_repartition(4));
    }
}

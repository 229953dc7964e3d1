//! Alerts to Slack-compatible webhooks, off the hot path.
//!
//! The relay is a consumer of the pipeline's alerts topic (`read_committed`, group
//! `<group>.alert-webhooks`) on a thread of its own: event processing never waits for a
//! webhook, and Kafka is the queue, so a slow or failing endpoint makes the relay's own lag
//! grow, never the processor's. At most [`MAX_IN_FLIGHT`] deliveries run at once; beyond
//! that the relay pauses its partitions. Each delivery is retried with backoff and jitter
//! ([`retry`]); one that fails for good (a 4xx other than 408 and 429, or every attempt
//! spent) goes to the dead-letter topic with its reason (`alert_webhook_failed`). An
//! offset is committed once every alert before it is delivered or dead-lettered: a crash
//! or a rebalance can repeat a delivery, never lose one. The same alert id is posted once
//! per relay (the last 100,000 ids are remembered). The URL is read from its Secret file
//! at each delivery (a rotated Secret applies), and is never logged: it carries a token.

mod retry;
mod slack;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::task::JoinSet;

use super::RunError;
use super::metrics::Metrics;
use crate::config::{AlertSinkConfig, PipelineConfig, TopicRole};

pub use retry::Backoff;
use retry::{Verdict, judge};

/// Deliveries running at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Alert ids remembered as delivered.
const REMEMBERED: usize = 100_000;

/// The webhook URL files of each policy that has any.
pub fn webhooks(config: &PipelineConfig) -> BTreeMap<String, Vec<String>> {
    let mut by_policy = BTreeMap::new();
    for policy in &config.alerts {
        let files: Vec<String> = policy
            .sinks
            .iter()
            .filter_map(|sink| match sink {
                AlertSinkConfig::Webhook { url_file } => Some(url_file.clone()),
                AlertSinkConfig::Kafka { .. } => None,
            })
            .collect();
        if !files.is_empty() {
            by_policy.insert(policy.name.clone(), files);
        }
    }
    by_policy
}

/// Starts the relay when a policy has a webhook sink; it runs until `stop` is set.
pub fn spawn(
    config: &PipelineConfig,
    client: &ClientConfig,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    backoff: Backoff,
) -> Result<Option<std::thread::JoinHandle<()>>, RunError> {
    let webhooks = webhooks(config);
    if webhooks.is_empty() {
        return Ok(None);
    }
    let alerts = config.topic(TopicRole::Alerts);
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", format!("{}.alert-webhooks", config.consumer_group()))
        .set("client.id", "stockpulse-alert-webhooks")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| RunError::kafka("creating the webhook relay's consumer", e))?;
    consumer.subscribe(&[&alerts]).map_err(|e| RunError::kafka("subscribing the webhook relay", e))?;
    let producer: BaseProducer = client
        .clone()
        .set("client.id", "stockpulse-alert-webhooks")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| RunError::kafka("creating the webhook relay's producer", e))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| RunError::Config(format!("webhook sinks: cannot load the system's CA certificates: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Config(format!("cannot start the webhook runtime: {e}")))?;
    let relay = Relay {
        webhooks: Arc::new(webhooks),
        dead_letter: config.topic(TopicRole::DeadLetter),
        alerts,
        consumer,
        producer,
        http: Client::builder(TokioExecutor::new()).build(https),
        metrics,
        backoff,
        pending: BTreeMap::new(),
        recent: RecentIds::default(),
    };
    let handle = std::thread::Builder::new()
        .name("alert-webhooks".into())
        .spawn(move || runtime.block_on(relay.run(stop)))
        .map_err(|e| RunError::Config(format!("cannot start the webhook thread: {e}")))?;
    tracing::info!("alert webhook relay started");
    Ok(Some(handle))
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

struct Relay {
    webhooks: Arc<BTreeMap<String, Vec<String>>>,
    alerts: String,
    dead_letter: String,
    consumer: BaseConsumer,
    producer: BaseProducer,
    http: Client<Https, Full<Bytes>>,
    metrics: Arc<Metrics>,
    backoff: Backoff,
    /// Per partition, the offsets read and whether each is done.
    pending: BTreeMap<i32, BTreeMap<i64, bool>>,
    recent: RecentIds,
}

/// How a delivery ended.
struct Done {
    partition: i32,
    offset: i64,
    policy: String,
    alert_id: String,
    result: Result<(), String>,
    original: Vec<u8>,
}

impl Relay {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        let mut deliveries: JoinSet<Done> = JoinSet::new();
        let mut paused = false;
        let mut last_commit = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            while let Some(Ok(done)) = deliveries.try_join_next() {
                self.finish(done);
            }
            let full = deliveries.len() >= MAX_IN_FLIGHT;
            if full != paused {
                // Kafka is the queue: no more is read while as many deliveries run.
                if let Ok(assignment) = self.consumer.assignment() {
                    let _ = if full { self.consumer.pause(&assignment) } else { self.consumer.resume(&assignment) };
                }
                paused = full;
            }
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(message)) => {
                    let original = message.payload().unwrap_or_default().to_vec();
                    self.take(message.partition(), message.offset(), original, &mut deliveries);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "webhook relay: reading alerts");
                    self.metrics.kafka_errors.get_or_create(&vec![("operation", "webhook_read".to_string())]).inc();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {
                    let wait = tokio::time::sleep(Duration::from_millis(20));
                    tokio::select! {
                        Some(Ok(done)) = deliveries.join_next(), if !deliveries.is_empty() => self.finish(done),
                        () = wait => {}
                    }
                }
            }
            self.producer.poll(Duration::ZERO);
            self.metrics.webhook_in_flight.set(deliveries.len() as i64);
            if last_commit.elapsed() >= Duration::from_secs(1) {
                self.commit();
                last_commit = Instant::now();
            }
        }
        // Stopping: deliveries under way get a few seconds, then what is done is committed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(done))) = tokio::time::timeout_at(deadline, deliveries.join_next()).await {
            self.finish(done);
        }
        self.commit();
        tracing::info!("alert webhook relay stopped");
    }

    /// One alert record: delivered to its policy's webhooks, or passed over.
    fn take(&mut self, partition: i32, offset: i64, original: Vec<u8>, deliveries: &mut JoinSet<Done>) {
        self.pending.entry(partition).or_default().insert(offset, false);
        let alert: Option<Value> = serde_json::from_slice(&original).ok();
        let field = |name: &str| alert.as_ref().and_then(|a| a.get(name)).and_then(Value::as_str).map(str::to_string);
        let (Some(alert), Some(policy), Some(alert_id)) = (alert.as_ref(), field("policy"), field("alert_id")) else {
            // Not an alert record this version can read: nothing to deliver.
            self.mark_done(partition, offset);
            return;
        };
        let Some(files) = self.webhooks.get(&policy).cloned() else {
            self.mark_done(partition, offset);
            return;
        };
        if !self.recent.insert(&alert_id) {
            self.metrics.webhook_deliveries.get_or_create(&outcome(&policy, "repeated")).inc();
            self.mark_done(partition, offset);
            return;
        }
        let body = Bytes::from(slack::payload(alert));
        let (http, backoff, metrics) = (self.http.clone(), self.backoff, self.metrics.clone());
        deliveries.spawn(async move {
            let mut result = Ok(());
            for file in &files {
                if let Err(reason) = deliver(&http, file, body.clone(), backoff, &metrics, &policy).await {
                    result = Err(reason);
                    break;
                }
            }
            Done { partition, offset, policy, alert_id, result, original }
        });
    }

    fn finish(&mut self, done: Done) {
        match &done.result {
            Ok(()) => {
                self.metrics.webhook_deliveries.get_or_create(&outcome(&done.policy, "delivered")).inc();
            }
            Err(reason) => {
                self.metrics.webhook_deliveries.get_or_create(&outcome(&done.policy, "failed")).inc();
                tracing::warn!(policy = %done.policy, alert = %done.alert_id, %reason, "alert webhook failed; dead-lettered");
                // Failed for good: it may be posted again only by hand, from the dead letter.
                self.recent.remove(&done.alert_id);
                self.dead_letter(&done, reason);
            }
        }
        self.mark_done(done.partition, done.offset);
    }

    fn dead_letter(&self, done: &Done, reason: &str) {
        let reason = format!("alert_webhook_failed: policy {}: {reason}", done.policy);
        let source = format!("{}/{}/{}", self.alerts, done.partition, done.offset);
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header { key: "stockpulse.reason", value: Some(reason.as_bytes()) })
            .insert(Header { key: "stockpulse.reason_code", value: Some("alert_webhook_failed".as_bytes()) })
            .insert(Header { key: "stockpulse.source", value: Some(source.as_bytes()) });
        let record = BaseRecord::to(&self.dead_letter).key(&done.alert_id).payload(&done.original).headers(headers);
        if let Err((e, _)) = self.producer.send(record) {
            tracing::error!(error = %e, alert = %done.alert_id, "cannot dead-letter a failed alert webhook");
        }
    }

    fn mark_done(&mut self, partition: i32, offset: i64) {
        if let Some(done) = self.pending.get_mut(&partition).and_then(|offsets| offsets.get_mut(&offset)) {
            *done = true;
        }
    }

    /// Commits, per partition, past every offset done with nothing undone before it (after
    /// the dead letters of those are flushed).
    fn commit(&mut self) {
        let mut offsets = TopicPartitionList::new();
        for (&partition, pending) in &mut self.pending {
            let mut next = None;
            while let Some((&offset, &done)) = pending.first_key_value() {
                if !done {
                    break;
                }
                pending.pop_first();
                next = Some(offset + 1);
            }
            if let Some(next) = next {
                let _ = offsets.add_partition_offset(&self.alerts, partition, Offset::Offset(next));
            }
        }
        if offsets.count() == 0 {
            return;
        }
        if let Err(e) = self.producer.flush(Duration::from_secs(10)) {
            // Not committed: those alerts are read and delivered again rather than lost.
            tracing::warn!(error = %e, "webhook relay: dead letters not flushed; offsets not committed");
            return;
        }
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(error = %e, "webhook relay: committing offsets");
        }
    }
}

fn outcome(policy: &str, outcome: &str) -> Vec<(&'static str, String)> {
    vec![("policy", policy.to_string()), ("outcome", outcome.to_string())]
}

/// Posts one alert to one webhook, retrying as [`Backoff`] says; the reason when it failed.
async fn deliver(
    http: &Client<Https, Full<Bytes>>,
    url_file: &str,
    body: Bytes,
    backoff: Backoff,
    metrics: &Metrics,
    policy: &str,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = match read_url(url_file) {
            Ok(uri) => post(http, uri, body.clone()).await,
            Err(e) => Err(e),
        };
        let reason = match judge(answer) {
            Verdict::Delivered => return Ok(()),
            Verdict::Fail(reason) => return Err(format!("{reason} (attempt {attempt})")),
            Verdict::Retry(reason) => reason,
        };
        if attempt >= backoff.attempts {
            return Err(format!("{reason} (after {attempt} attempts)"));
        }
        metrics.webhook_deliveries.get_or_create(&outcome(policy, "retried")).inc();
        let jitter: f64 = rand::rng().random();
        tokio::time::sleep(backoff.delay(attempt, jitter)).await;
    }
}

/// The webhook URL from its Secret file (re-read each time: a rotated Secret applies).
fn read_url(file: &str) -> Result<hyper::Uri, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read the webhook URL file {file}: {e}"))?;
    text.trim().parse::<hyper::Uri>().map_err(|e| format!("the webhook URL in {file} is not a URL: {e}"))
}

/// One POST; its status, or why there was none (named by host only: the path is a token).
async fn post(http: &Client<Https, Full<Bytes>>, uri: hyper::Uri, body: Bytes) -> Result<u16, String> {
    let host = uri.host().unwrap_or_default().to_string();
    let request = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| format!("building the request to {host}: {e}"))?;
    match tokio::time::timeout(ATTEMPT_TIMEOUT, http.request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(format!("no answer from {host}: {e}")),
        Err(_) => Err(format!("no answer from {host} within {}s", ATTEMPT_TIMEOUT.as_secs())),
    }
}

/// The alert ids delivered lately, at most [`REMEMBERED`].
#[derive(Default)]
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl RecentIds {
    /// `false` when the id is already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.order.push_back(id.to_string());
        self.set.insert(id.to_string());
        true
    }

    fn remove(&mut self, id: &str) {
        self.set.remove(id);
    }
}

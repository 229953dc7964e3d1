//! The tasks of one instance and the one place their records are sent: outputs, changelog
//! and input offsets, committed together (a Kafka transaction, or produce-then-commit when
//! exactly-once is off).
//!
//! Rebalances (Kafka's range assignment, so sales p and inventory p land on one instance):
//! on revocation every task's work is committed, then the revoked tasks are suspended, with
//! their changelog's end; on assignment a task's input partitions are paused while the
//! processing loop reads its changelog back ([`super::restore`]), a step each turn, so that a
//! long restore never holds up the loop, the probes or the other tasks. A suspended task whose
//! offsets are still the committed ones and whose changelog has nothing past the end it left
//! resumes as it is; any other is restored whole. Its partitions are then sought to the
//! committed offsets and resumed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};

use crate::config::{AlertSinkConfig, PipelineConfig, TopicRole};
use crate::engine::{Engine, InputRecord, RepartitionRecord, StateChange};
use crate::output::Output;
use crate::reference::ReferenceUpdate;

use super::committer::{self, Committer, Ended};
use super::http::Health;
use super::limits::RecordLimits;
use super::metrics::Metrics;
use super::restore::{ChangelogReader, Step};
use super::task::{self, INVENTORY, OFFSETS_HEADER, PARTITIONS_HEADER, REPARTITION, SALES, Task};
use super::{RunError, now_millis};

/// Longest header value written: a dead-letter reason can quote the input (an `event_id` of
/// a megabyte that is not a UUID), and a header is never cut to fit by the record limits.
const MAX_HEADER_BYTES: usize = 1024;
/// How long one Kafka call of the commit path may take before it counts as failed.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a task waits for a partition known to hold more before it is logged.
const WAIT_WARNING: Duration = Duration::from_secs(30);

/// Counts failed deliveries (at-least-once mode checks them before committing offsets), keeps
/// the first refusal that no retry can get past (the topic and why), and where this producer's
/// records on each changelog partition end.
#[derive(Default)]
pub struct DeliveryContext {
    pub failed: std::sync::atomic::AtomicU64,
    refused: Mutex<Option<(String, Refusal)>>,
    changelog: Option<String>,
    /// Per changelog partition, the offset after the last record delivered there.
    changelog_ends: Mutex<BTreeMap<i32, i64>>,
}

/// Why a topic refuses every record, however often the work is redone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Larger than its `max.message.bytes`, lowered since the instance read it.
    TooLarge,
    /// The topic is gone (deleted while the instance writes to it).
    UnknownTopic,
    /// The instance may no longer write to it (its ACL was removed).
    Unauthorized,
}

impl Refusal {
    fn of(code: RDKafkaErrorCode) -> Option<Refusal> {
        match code {
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize => Some(Refusal::TooLarge),
            // librdkafka's own finding after the metadata said so for a while. The broker's
            // UNKNOWN_TOPIC_OR_PARTITION can come in passing (a leader moving): a failed
            // transaction asks the cluster's metadata before anything ends the run.
            RDKafkaErrorCode::UnknownTopic => Some(Refusal::UnknownTopic),
            RDKafkaErrorCode::TopicAuthorizationFailed => Some(Refusal::Unauthorized),
            _ => None,
        }
    }

    fn error(self, topic: &str) -> RunError {
        match self {
            Refusal::TooLarge => RunError::Config(format!(
                "topic {topic} refused a record as larger than its max.message.bytes, which changed since this \
                 instance read it at start; exiting so that the restart reads it (nothing was committed past the refused record)"
            )),
            Refusal::UnknownTopic => RunError::Config(format!(
                "topic {topic} does not exist any more (deleted while this instance wrote to it); exiting, since every \
                 retry would fail the same way (nothing was committed past the last commit; the operator creates the topic again)"
            )),
            Refusal::Unauthorized => RunError::Config(format!(
                "writing to topic {topic} is not authorized (its ACL was removed?); exiting, since every retry would \
                 fail the same way (nothing was committed past the last commit)"
            )),
        }
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Ok(message) = result
            && self.changelog.as_deref() == Some(message.topic())
            && let Ok(mut ends) = self.changelog_ends.lock()
        {
            let end = ends.entry(message.partition()).or_insert(0);
            *end = (*end).max(message.offset().saturating_add(1));
        }
        if let Err((e, message)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, topic = message.topic(), "output record not delivered");
            if let Some(refusal) = e.rdkafka_error_code().and_then(Refusal::of)
                && let Ok(mut refused) = self.refused.lock()
            {
                refused.get_or_insert_with(|| (message.topic().to_string(), refusal));
            }
        }
    }
}

impl DeliveryContext {
    /// A context that follows where this producer's records on changelog `topic` end.
    fn writing_changelog(topic: &str) -> Self {
        DeliveryContext { changelog: Some(topic.to_string()), ..DeliveryContext::default() }
    }

    /// The offset after the last record this producer delivered to changelog `partition`.
    fn changelog_end(&self, partition: i32) -> Option<i64> {
        self.changelog_ends.lock().ok()?.get(&partition).copied()
    }

    /// The error to end the run with when a topic refused a record for good (too large since
    /// its limit was lowered, deleted, or no longer writable): every retry would be refused
    /// again, so the run ends naming the topic, and the restart reads the topics anew.
    fn refusal(&self) -> Option<RunError> {
        let (topic, refusal) = self.refused.lock().ok()?.clone()?;
        Some(refusal.error(&topic))
    }
}

pub struct Topics {
    pub sales: String,
    pub inventory: String,
    pub changelog: String,
    /// The repartition topic, when windows are merged across tasks ([`Topics::with_repartition`]).
    pub repartition: Option<String>,
    outputs: BTreeMap<TopicRole, String>,
    /// The Kafka topics alert policies name as sinks, besides the alerts topic, by policy.
    alert_sinks: BTreeMap<String, Vec<String>>,
}

impl Topics {
    pub fn of(config: &PipelineConfig) -> Self {
        let outputs = TopicRole::OUTPUTS.into_iter().map(|role| (role, config.topic(role))).collect();
        Topics {
            sales: config.topic(TopicRole::Sales),
            inventory: config.topic(TopicRole::Inventory),
            changelog: config.topic(TopicRole::Changelog),
            repartition: None,
            outputs,
            alert_sinks: config
                .alerts
                .iter()
                .map(|p| {
                    let alerts = config.topic(TopicRole::Alerts);
                    let topics = p.sinks.iter().filter_map(move |sink| match sink {
                        // The alerts topic has every alert already.
                        AlertSinkConfig::Kafka { topic } if *topic != alerts => Some(topic.clone()),
                        _ => None,
                    });
                    (p.name.clone(), topics.collect::<Vec<_>>())
                })
                .filter(|(_, topics)| !topics.is_empty())
                .collect(),
        }
    }

    /// Every topic an output alert policy writes to besides the pipeline's topics.
    pub fn alert_sink_topics(&self) -> impl Iterator<Item = &str> {
        self.alert_sinks.values().flatten().map(String::as_str)
    }

    /// Every topic the processor writes: outputs, alert sinks, changelog and repartition.
    pub fn written(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.outputs.values().map(String::as_str).collect();
        topics.extend(self.alert_sink_topics());
        topics.push(&self.changelog);
        topics.extend(self.repartition.as_deref());
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// The same, reading and writing the repartition topic as well.
    pub fn with_repartition(mut self, config: &PipelineConfig) -> Self {
        self.repartition = Some(config.topic(TopicRole::Repartition));
        self
    }

    /// The input topics, in task stream order.
    pub fn inputs(&self) -> Vec<&str> {
        let mut inputs = vec![self.sales.as_str(), self.inventory.as_str()];
        inputs.extend(self.repartition.as_deref());
        inputs
    }
}

pub struct Worker {
    pub config: Arc<PipelineConfig>,
    pub topics: Topics,
    client: ClientConfig,
    producer: Arc<BaseProducer<DeliveryContext>>,
    /// What the producer was created from, to create its replacement.
    producer_config: ClientConfig,
    /// How large a record each written topic takes.
    limits: RecordLimits,
    /// Commits transactions beside the processing loop (exactly-once only).
    committer: Option<Committer>,
    tasks: BTreeMap<i32, Task>,
    /// Tasks whose changelog is being read back, their input partitions paused.
    restoring: BTreeMap<i32, Restoring>,
    /// Tasks given up in the rebalance under way, kept in case they come back.
    suspended: BTreeMap<i32, Task>,
    /// Reference data as it stands, for tasks created later.
    references: Vec<ReferenceUpdate>,
    outputs: Vec<Output>,
    changes: Vec<StateChange>,
    /// Input record timestamps of the open transaction (end-to-end latency at commit).
    timestamps: Vec<i64>,
    /// When the last commit began (on the commit thread) or ended (a synchronous one): the
    /// next is due an interval later, and once the one in flight has ended.
    last_commit: Instant,
    merge: task::MergeOptions,
    /// Input partitions, which is the number of tasks of the pipeline.
    partitions: u32,
    input_topics: [Arc<str>; 3],
    /// The buffer output values are serialized into, reused.
    value: Vec<u8>,
    output_counters: BTreeMap<TopicRole, prometheus_client::metrics::counter::Counter>,
    /// Transactions aborted since the last commit: the next restore waits longer each time.
    aborts_in_a_row: u32,
    /// The outputs held while the commit in flight ends.
    held: Held,
    /// A failure inside a rebalance callback, for the loop to act on.
    pub fatal: Option<RunError>,
    /// Rebalances seen (assignments and revocations): a description of the group read before
    /// the last one is stale.
    pub rebalances: u64,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<PipelineConfig>,
        topics: Topics,
        partitions: u32,
        client: ClientConfig,
        producer_config: ClientConfig,
        limits: RecordLimits,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        merge: task::MergeOptions,
    ) -> Result<Self, RunError> {
        let (producer, committer) =
            start_producer(&producer_config, &topics.changelog, config.processing.exactly_once, &metrics)?;
        Ok(Worker {
            input_topics: [
                Arc::from(topics.sales.as_str()),
                Arc::from(topics.inventory.as_str()),
                Arc::from(topics.repartition.as_deref().unwrap_or_default()),
            ],
            merge,
            partitions,
            value: Vec::with_capacity(1024),
            output_counters: BTreeMap::new(),
            topics,
            config,
            client,
            producer,
            producer_config,
            limits,
            committer,
            tasks: BTreeMap::new(),
            restoring: BTreeMap::new(),
            suspended: BTreeMap::new(),
            references: Vec::new(),
            outputs: Vec::new(),
            changes: Vec::new(),
            timestamps: Vec::new(),
            last_commit: Instant::now(),
            aborts_in_a_row: 0,
            held: Held::default(),
            fatal: None,
            rebalances: 0,
            metrics,
            health,
        })
    }

    /// The engine of task `partition`, if this instance holds it.
    pub fn task_engine(&self, partition: i32) -> Option<&Engine> {
        self.tasks.get(&partition).map(|task| &task.engine)
    }

    /// Every task this instance holds, by partition.
    pub fn task_engines(&self) -> impl Iterator<Item = (i32, &Engine)> {
        self.tasks.iter().map(|(partition, task)| (*partition, &task.engine))
    }

    /// Serves the producer's delivery reports (the processing loop calls it each round: a
    /// `BaseProducer`, so that a commit's flush serves them itself instead of waiting for a
    /// background thread's next poll, which cost 100 ms a commit).
    pub fn poll_producer(&self) {
        self.producer.poll(Duration::ZERO);
    }

    /// Waits for records still on their way (at-least-once mode) before the process exits.
    pub fn flush_producer(&self) {
        if let Err(e) = committer::flush(&self.producer, KAFKA_TIMEOUT) {
            tracing::warn!(error = %e, "flushing the producer at shutdown");
        }
    }

    /// Applies reference updates to every task, and keeps them for tasks to come.
    pub fn apply_references(&mut self, updates: &[ReferenceUpdate], table: impl Iterator<Item = ReferenceUpdate>) {
        if updates.is_empty() {
            return;
        }
        let suspended = self.suspended.values_mut();
        let resumable = self.restoring.values_mut().filter_map(|r| r.suspended.as_mut());
        for task in self.tasks.values_mut().chain(suspended).chain(resumable) {
            for update in updates {
                task.engine.apply_reference(update);
            }
        }
        self.references = table.collect();
    }

    /// Takes one fetched input record of a task this instance holds, and processes what is
    /// due in timestamp order.
    pub fn process<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), RunError> {
        let result = self.process_record(consumer, message).and_then(|()| self.hold_inputs(consumer));
        self.recovered(consumer, result)
    }

    fn process_record<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        message: &BorrowedMessage<'_>,
    ) -> Result<(), RunError> {
        let stream = if message.topic() == self.topics.sales {
            SALES
        } else if message.topic() == self.topics.inventory {
            INVENTORY
        } else {
            REPARTITION
        };
        let Some(task) = self.tasks.get_mut(&message.partition()) else {
            return Ok(()); // fetched before a revocation: its new owner processes it
        };
        if stream == REPARTITION {
            // Other tasks' partials and watermarks: merged as they come (the merged figures
            // do not depend on their order).
            if task.next[REPARTITION].is_some_and(|next| message.offset() < next) {
                return Ok(()); // fetched again after a rewind
            }
            let input = InputRecord {
                stream: 0,
                topic: &self.input_topics[REPARTITION],
                partition: message.partition(),
                offset: message.offset(),
                payload: message.payload().unwrap_or_default(),
            };
            task.engine.merge_input(&input, &mut self.outputs);
            task.next[REPARTITION] = Some(message.offset() + 1);
            task.dirty = true;
            return self.send_outputs();
        }
        let record = task::Buffered {
            offset: message.offset(),
            timestamp: message.timestamp().to_millis().unwrap_or(0),
            payload: message.payload().unwrap_or_default().to_vec(),
            arrived: Instant::now(),
        };
        if task.buffer(stream, record) {
            if task.buffers[stream].len() >= self.merge.max_buffered && !task.paused[stream] {
                // Waiting for the other partition: stop fetching this one until the task
                // catches up (librdkafka fetches it again from the position).
                set_paused(consumer, self.input_topics[stream].as_ref(), task.partition, true)?;
                task.paused[stream] = true;
                self.metrics.partition_pauses.inc();
            }
            self.drain(consumer, message.partition())?;
        }
        Ok(())
    }

    /// Processes a task's buffered records in timestamp order, as far as they are due.
    fn drain<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partition: i32) -> Result<(), RunError> {
        if self.held.over(self.merge.max_held_bytes) {
            return Ok(()); // until the commit in flight ends
        }
        let Some(task) = self.tasks.get_mut(&partition) else { return Ok(()) };
        let inputs = [self.topics.sales.as_str(), self.topics.inventory.as_str()];
        let fetched = task.fetched;
        let has_more = |stream: usize| holds_more(consumer, inputs[stream], partition, fetched[stream]);
        let mut processed = false;
        while let Some(stream) = task.next_stream(self.merge.max_idle, has_more) {
            let Some(record) = task.buffers[stream].pop_front() else { break };
            let topic = &self.input_topics[stream];
            // One engine stream for the task: its records arrive merged in produced order.
            let input = InputRecord { stream: 0, topic, partition, offset: record.offset, payload: &record.payload };
            task.engine.process(&input, &mut self.outputs);
            task.next[stream] = Some(record.offset + 1);
            task.dirty = true;
            self.timestamps.push(record.timestamp);
            processed = true;
        }
        for stream in [SALES, INVENTORY] {
            if task.paused[stream] && task.buffers[stream].len() <= self.merge.max_buffered / 2 {
                set_paused(consumer, inputs[stream], partition, false)?;
                task.paused[stream] = false;
            }
        }
        if processed { self.send_outputs() } else { Ok(()) }
    }

    /// Resumes the partitions of a task leaving this instance or rewound, and forgets its
    /// buffers.
    fn release<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, task: &mut Task) {
        for stream in [SALES, INVENTORY] {
            if task.paused[stream]
                && let Err(e) = set_paused(consumer, &self.input_topics[stream], task.partition, false)
            {
                tracing::warn!(error = %e, partition = task.partition, "resuming a paused partition");
            }
        }
        task.clear_buffers();
    }

    /// Advances processing time in every task (idle partitions, windows due, records that
    /// waited long enough for the other partition).
    pub fn tick<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, now: i64) -> Result<(), RunError> {
        let result = self.advance(consumer, now).and_then(|()| self.hold_inputs(consumer));
        self.recovered(consumer, result)
    }

    fn advance<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, now: i64) -> Result<(), RunError> {
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for partition in partitions {
            self.drain(consumer, partition)?;
        }
        for task in self.tasks.values_mut() {
            // A task that waits long for a partition known to hold more says so, once a wait.
            match task.waiting() {
                Some((stream, since)) if since.elapsed() >= WAIT_WARNING && !task.warned => {
                    task.warned = true;
                    tracing::warn!(
                        partition = task.partition,
                        waiting_for = %self.input_topics[stream],
                        waited_seconds = since.elapsed().as_secs(),
                        "task waits for a partition that holds more records than it has fetched (the broker is slow or the partition has no leader)"
                    );
                }
                None => task.warned = false,
                _ => {}
            }
        }
        let inputs = [self.topics.sales.as_str(), self.topics.inventory.as_str()];
        for task in self.tasks.values_mut() {
            let backlog = [SALES, INVENTORY].into_iter().any(|stream| {
                !task.buffers[stream].is_empty()
                    || holds_more(consumer, inputs[stream], task.partition, task.fetched[stream])
            });
            if backlog {
                // Not idle while records wait: a task catching up never takes another's clock.
                task.engine.backlog(now);
            }
            let before = self.outputs.len();
            task.engine.tick(now, &mut self.outputs);
            task.dirty |= self.outputs.len() > before;
            let delay = now.saturating_sub(task.engine.watermark().max(0)) as f64 / 1000.0;
            self.metrics.watermark_delay.get_or_create(&vec![("partition", task.partition.to_string())]).set(delay);
        }
        self.send_outputs()
    }

    /// Whether the loop has commit work: the commit in flight has ended, or none is in flight
    /// and an interval has passed since the last one began.
    pub fn commit_due(&mut self, interval: Duration) -> bool {
        match &mut self.committer {
            Some(committer) if committer.busy() => committer.has_ended(),
            _ => self.last_commit.elapsed() >= interval,
        }
    }

    /// Whether a commit is in flight (or its end not yet taken): the producer takes no record.
    pub fn committing(&self) -> bool {
        self.committer.as_ref().is_some_and(Committer::busy)
    }

    fn send_outputs(&mut self) -> Result<(), RunError> {
        if self.committing() {
            // The outputs wait in order in `outputs` for the next transaction.
            self.held.count(&self.outputs);
            return Ok(());
        }
        for output in std::mem::take(&mut self.outputs) {
            let role = output.role();
            let key = output.key();
            let mut value = std::mem::take(&mut self.value);
            value.clear();
            output.write_value(&mut value);
            if let (Output::Partial(_), Some(topic)) = (&output, &self.topics.repartition) {
                // To the task that owns the group: the partition of its key.
                let partition = crate::partitioner::partition_of(key.as_bytes(), self.partitions) as i32;
                send(&self.producer, BaseRecord::to(topic).partition(partition).key(&key).payload(&value))?;
                self.value = value;
                self.count_output(role);
                continue;
            }
            let Some(topic) = self.topics.outputs.get(&role) else {
                self.value = value;
                continue;
            };
            let mut headers = output.headers();
            for (_, text) in &mut headers {
                cut_text(text, MAX_HEADER_BYTES);
            }
            let header_bytes = |headers: &[(&str, String)]| headers.iter().map(|(n, t)| n.len() + t.len()).sum();
            if value.len() > self.limits.value_room(topic, key.len(), header_bytes(&headers)) {
                // The original of a dead-letter or late record the topic cannot take whole is
                // cut to fit, and its size said in a header.
                headers.push(("stockpulse.original_size", value.len().to_string()));
                headers.push(("stockpulse.truncated", "true".to_string()));
                value.truncate(self.limits.value_room(topic, key.len(), header_bytes(&headers)));
            }
            let mut record = BaseRecord::to(topic).key(&key).payload(&value);
            if !headers.is_empty() {
                let mut kafka_headers = OwnedHeaders::new_with_capacity(headers.len());
                for (name, text) in &headers {
                    kafka_headers = kafka_headers.insert(Header { key: name, value: Some(text.as_bytes()) });
                }
                record = record.headers(kafka_headers);
            }
            send(&self.producer, record)?;
            if let Output::Alert(alert) = &output {
                // The policy's own topics get the same record, in the same transaction.
                for topic in self.topics.alert_sinks.get(&*alert.policy).into_iter().flatten() {
                    send(&self.producer, BaseRecord::to(topic).key(&key).payload(&value))?;
                }
                let labels = vec![("policy", alert.policy.to_string()), ("rule", alert.rule.to_string())];
                self.metrics.alerts.get_or_create(&labels).inc();
                let last = self.metrics.alert_last_fired.get_or_create(&vec![("policy", alert.policy.to_string())]);
                last.set(last.get().max(alert.event_time as f64 / 1000.0));
            }
            self.value = value;
            self.count_output(role);
        }
        Ok(())
    }

    /// Counts an output record (the counter of each topic looked up once, not per record).
    fn count_output(&mut self, role: TopicRole) {
        let metrics = &self.metrics;
        self.output_counters
            .entry(role)
            .or_insert_with(|| metrics.outputs.get_or_create(&vec![("topic", role.to_string())]).clone())
            .inc();
    }

    /// The loop's commit work: takes the end of the commit in flight, and begins the next
    /// one when it is due. Records are processed while a commit is in flight.
    pub fn commit_step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        interval: Duration,
    ) -> Result<(), RunError> {
        let mut result = Ok(());
        if let Some(ended) = self.committer.as_mut().and_then(Committer::take_ended) {
            result = self.after_commit(consumer, ended);
        }
        if result.is_ok() && !self.committing() && self.last_commit.elapsed() >= interval {
            result = self.begin_commit(consumer);
        }
        self.recovered(consumer, result)
    }

    /// A transaction that failed while its records were sent (a delivery timed out while the
    /// broker was away, say: the producer takes no more records) is aborted and every task
    /// rebuilt, as after a failed commit; the run goes on. Anything else passes. A shutdown's
    /// or a rebalance's commit ([`Worker::commit`]) is not retried this way: the run ends
    /// there, and the restart redoes the work.
    fn recovered<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        result: Result<(), RunError>,
    ) -> Result<(), RunError> {
        match result {
            Err(RunError::TransactionFailed(e)) if self.committer.is_some() => {
                self.transaction_failed(&e);
                self.abort_and_restore(consumer, &e)
            }
            other => other,
        }
    }

    /// Commits everything processed so far and waits for it (rebalance, shutdown).
    pub fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        self.finish_commit(consumer)?;
        self.begin_commit(consumer)?;
        self.finish_commit(consumer)
    }

    /// Waits for the commit in flight, if any, and takes its end.
    fn finish_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        match self.committer.as_mut().and_then(Committer::wait) {
            Some(ended) => self.after_commit(consumer, ended),
            None => Ok(()),
        }
    }

    /// Flushes every task, writes its changelog and commits it all with the input offsets:
    /// hands the transaction to the commit thread (exactly-once), or flushes and commits the
    /// offsets here (at-least-once).
    fn begin_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        self.last_commit = Instant::now();
        let mut offsets = TopicPartitionList::new();
        let mut any = false;
        for task in self.tasks.values_mut() {
            if let Some(topic) = &self.topics.repartition {
                // Every merging task hears where this one's watermark stands; sent after the
                // partials it covers, which went out as they were computed.
                let report = task.engine.watermark_report();
                if task.reported != Some(report) {
                    let (watermark, idle) = report;
                    let record = RepartitionRecord::Watermark { task: task.partition as u32, watermark, idle };
                    let value = serde_json::to_vec(&record).unwrap_or_default();
                    let key = format!("watermark|{}", task.partition);
                    for partition in 0..self.partitions as i32 {
                        send(&self.producer, BaseRecord::to(topic).partition(partition).key(&key).payload(&value))?;
                    }
                    task.reported = Some(report);
                    task.dirty = true;
                }
            }
            if !task.dirty {
                continue;
            }
            any = true;
            task.dirty = false;
            task.engine.flush(&mut self.outputs);
            task.engine.drain_changes(&mut self.changes);
            let header = task.offsets_header();
            let partitions = self.partitions.to_string();
            for change in self.changes.drain(..) {
                let headers = OwnedHeaders::new_with_capacity(2)
                    .insert(Header { key: OFFSETS_HEADER, value: Some(header.as_bytes()) })
                    .insert(Header { key: PARTITIONS_HEADER, value: Some(partitions.as_bytes()) });
                let mut record = BaseRecord::<String, String>::to(&self.topics.changelog)
                    .partition(task.partition)
                    .key(&change.key)
                    .headers(headers);
                if let Some(value) = &change.value {
                    record = record.payload(value);
                }
                send(&self.producer, record)?;
            }
            for (stream, topic) in self.topics.inputs().into_iter().enumerate() {
                if let Some(next) = task.next[stream] {
                    offsets
                        .add_partition_offset(topic, task.partition, Offset::Offset(next))
                        .map_err(|e| RunError::kafka("listing offsets to commit", e))?;
                }
            }
            self.metrics.add_engine_delta(&task.counted, task.engine.stats());
            task.counted = task.engine.stats().clone();
        }
        self.send_outputs()?;
        if !any {
            return Ok(());
        }
        if let Some(committer) = &mut self.committer {
            let group = consumer
                .group_metadata()
                .ok_or_else(|| RunError::Config("the consumer has no group metadata to commit offsets with".into()))?;
            committer.start(offsets, group, std::mem::take(&mut self.timestamps));
            return Ok(());
        }
        let started = Instant::now();
        committer::flush(&self.producer, KAFKA_TIMEOUT).map_err(|e| RunError::kafka("flushing outputs", e))?;
        let failed = self.producer.context().failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            return Err(self.producer.context().refusal().unwrap_or(RunError::Delivery(failed)));
        }
        if offsets.count() > 0 {
            consumer
                .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
                .map_err(|e| RunError::kafka("committing input offsets", e))?;
        }
        let timestamps = std::mem::take(&mut self.timestamps);
        self.committed(started, timestamps);
        // This commit held up the loop: the next interval runs from its end, so that records
        // get processed between commits however long they take.
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Counts a commit that succeeded, and the end-to-end latency of the records it covers.
    fn committed(&mut self, started: Instant, mut timestamps: Vec<i64>) {
        self.aborts_in_a_row = 0;
        for task in self.tasks.values_mut() {
            task.engine.commit_ended();
            // Every record of this commit is delivered (flushed before the commit).
            if let Some(end) = self.producer.context().changelog_end(task.partition) {
                task.changelog_end = task.changelog_end.max(Some(end));
            }
        }
        self.metrics.transactions.get_or_create(&vec![("result", "committed".to_string())]).inc();
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        let now = now_millis();
        for ts in timestamps.drain(..) {
            self.metrics.latency.observe(now.saturating_sub(ts).max(0) as f64 / 1000.0);
        }
        self.health.set_kafka_error(None);
    }

    /// The end of a transaction handed to the commit thread: the next transaction begins and
    /// takes the outputs held meanwhile; a failed commit is aborted, and every task restored
    /// and rewound to what was committed.
    fn after_commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, ended: Ended) -> Result<(), RunError> {
        let Some(result) = ended.result else { return Err(RunError::CommitInDoubt) };
        match result {
            Ok(()) => {
                self.committed(ended.started, ended.timestamps);
                self.producer.begin_transaction().map_err(|e| RunError::kafka("beginning a transaction", e))?;
                self.send_outputs()?;
                self.release_inputs(consumer)
            }
            Err(e) => {
                self.transaction_failed(&e);
                if is_fatal(&e) {
                    return Err(RunError::Fenced(e.to_string()));
                }
                if let Some(refused) = refusal_reported(&self.producer) {
                    return Err(refused);
                }
                self.abort_and_restore(consumer, &e)
            }
        }
    }

    /// Counts a failed transaction and shows it on `/readyz` until the next commit.
    fn transaction_failed(&self, error: &KafkaError) {
        self.metrics.transactions.get_or_create(&vec![("result", "aborted".to_string())]).inc();
        self.health.set_kafka_error(Some(error.to_string()));
    }

    /// Aborts the open transaction, begins the next, and rebuilds every task from its
    /// changelog, rewound to the committed offsets: the engines are ahead of what was
    /// committed (by the aborted transaction and the records processed since, whose outputs
    /// were held).
    fn abort_and_restore<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        error: &KafkaError,
    ) -> Result<(), RunError> {
        if let Some(refused) = self.producer.context().refusal() {
            return Err(refused);
        }
        if let Some(gone) = self.missing_written_topic(consumer) {
            // Deleted: its records time out (librdkafka takes a deleted topic for one still
            // being created for a while), and so would every redo.
            return Err(Refusal::UnknownTopic.error(&gone));
        }
        // A failure that comes back at once (the broker refusing every transaction) is not
        // redone in a tight loop: 0.1 s, 0.2 s, ... up to 10 s between tries, until a commit.
        self.aborts_in_a_row = self.aborts_in_a_row.saturating_add(1);
        let backoff = abort_backoff(self.aborts_in_a_row);
        tracing::warn!(error = %error, aborts_in_a_row = self.aborts_in_a_row, backoff_ms = backoff.as_millis() as u64, "transaction failed; aborting it and restoring every task");
        std::thread::sleep(backoff);
        match self.producer.abort_transaction(KAFKA_TIMEOUT) {
            Ok(()) => self.producer.begin_transaction().map_err(|e| RunError::kafka("beginning a transaction", e))?,
            // After deliveries timed out the coordinator can refuse the abort (INVALID_TXN_STATE,
            // seen on Apache Kafka 4.4), which leaves the producer failed for good. A new
            // producer of the same transactional id fences it and aborts its transaction.
            Err(e) => {
                tracing::warn!(error = %e, "aborting the transaction failed; replacing the producer");
                self.replace_producer()?;
            }
        }
        self.outputs.clear();
        self.timestamps.clear();
        // Every task is restored: its partitions are paused and resumed with it.
        self.held = Held::default();
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for mut task in std::mem::take(&mut self.tasks).into_values() {
            self.release(consumer, &mut task);
        }
        self.begin_restores(consumer, &partitions)
    }

    /// A topic this instance writes that the cluster says it does not have; `None` when all
    /// are there, or when the cluster cannot be asked or answers with another error (a broker
    /// back from a stall may not know a leader yet: the restore goes on and retries).
    fn missing_written_topic<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) -> Option<String> {
        let metadata = consumer.fetch_metadata(None, KAFKA_TIMEOUT).ok()?;
        if metadata.brokers().is_empty() {
            return None;
        }
        let missing = |name: &str| match metadata.topics().iter().find(|t| t.name() == name) {
            None => true,
            Some(topic) => {
                topic.error().map(rdkafka::error::RDKafkaErrorCode::from)
                    == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            }
        };
        self.topics.written().into_iter().find(|topic| missing(topic)).map(str::to_string)
    }

    /// Replaces a failed transactional producer, and the commit thread that holds it (no commit
    /// is in flight when this is called).
    fn replace_producer(&mut self) -> Result<(), RunError> {
        self.committer = None;
        (self.producer, self.committer) =
            start_producer(&self.producer_config, &self.topics.changelog, true, &self.metrics)?;
        Ok(())
    }

    /// Pauses every input of every task when the outputs held for the commit in flight have
    /// passed the budget (once; [`Worker::release_inputs`] resumes them when it ends).
    fn hold_inputs<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        if self.held.inputs_paused || !self.held.over(self.merge.max_held_bytes) {
            return Ok(());
        }
        for partition in self.tasks.keys() {
            self.pause_inputs(consumer, *partition, true)?;
        }
        self.held.inputs_paused = true;
        self.metrics.input_holds.inc();
        Ok(())
    }

    /// The commit in flight has ended and its held outputs are sent: the held bytes are
    /// counted in the metrics, and inputs paused for them resumed (but those of a partition
    /// whose buffer is full), and the records buffered meanwhile processed.
    fn release_inputs<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), RunError> {
        let held = std::mem::take(&mut self.held);
        self.metrics.held_output_bytes.observe(held.peak as f64);
        if !held.inputs_paused {
            return Ok(());
        }
        let inputs = self.topics.inputs();
        for task in self.tasks.values() {
            for (stream, topic) in inputs.iter().enumerate() {
                if !task.paused.get(stream).copied().unwrap_or(false) {
                    set_paused(consumer, topic, task.partition, false)?;
                }
            }
        }
        let partitions: Vec<i32> = self.tasks.keys().copied().collect();
        for partition in partitions {
            self.drain(consumer, partition)?;
        }
        Ok(())
    }

    /// Whether tasks are being restored.
    pub fn restoring(&self) -> bool {
        !self.restoring.is_empty()
    }

    /// Starts reading back the task of each partition number this instance does not hold yet:
    /// its input partitions are paused until it is ready ([`Worker::restore_step`]).
    fn begin_restores<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        partitions: &[i32],
    ) -> Result<(), RunError> {
        for &partition in partitions {
            if self.tasks.contains_key(&partition) || self.restoring.contains_key(&partition) {
                continue;
            }
            let committed = task::committed_offsets(consumer, &self.topics.inputs(), partition, KAFKA_TIMEOUT)?;
            self.pause_inputs(consumer, partition, true)?;
            let changelog = &self.topics.changelog;
            // Its changelog is read from where the state this instance holds of it ends
            // (`Task::changelog_end`, not the end when it was given up: after a session timeout
            // the revocation comes late, when another instance may have written already).
            let resumable = self.suspended.remove(&partition).filter(|task| task.next == committed);
            let (reader, suspended) = match resumable.and_then(|task| Some((task.changelog_end?, task))) {
                Some((end, task)) => (ChangelogReader::since(&self.client, changelog, partition, end)?, Some(task)),
                None => (ChangelogReader::whole(&self.client, changelog, partition, committed)?, None),
            };
            self.restoring.insert(partition, Restoring { committed, reader, suspended, started: Instant::now() });
        }
        self.count_tasks();
        Ok(())
    }

    /// Reads the changelogs of the tasks being restored for `budget` (shared among them), and
    /// starts each task whose reading is done.
    pub fn restore_step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        budget: Duration,
    ) -> Result<(), RunError> {
        if self.restoring.is_empty() {
            return Ok(());
        }
        let share = (budget / self.restoring.len() as u32).max(Duration::from_millis(5));
        let partitions: Vec<i32> = self.restoring.keys().copied().collect();
        for partition in partitions {
            let Some(restoring) = self.restoring.get_mut(&partition) else { continue };
            let step = restoring.reader.step(share)?;
            let task = match step {
                Step::Pending => continue,
                Step::Unchanged if restoring.suspended.is_some() => {
                    let Some(task) = self.restoring.remove(&partition).and_then(|r| r.suspended) else { continue };
                    tracing::info!(
                        partition,
                        "task resumed as this instance left it: nothing was committed to it since"
                    );
                    task
                }
                Step::Changed | Step::Unchanged => {
                    tracing::info!(
                        partition,
                        "the task changed on another instance since this one gave it up; restoring it whole"
                    );
                    restoring.suspended = None;
                    restoring.reader =
                        ChangelogReader::whole(&self.client, &self.topics.changelog, partition, restoring.committed)?;
                    continue;
                }
                Step::Read { built_for: Some(built_for), .. } if built_for != self.partitions => {
                    return Err(RunError::Config(task::partitions_changed(built_for, self.partitions)));
                }
                Step::Read { state, records, end, .. } => {
                    let Some(restoring) = self.restoring.remove(&partition) else { continue };
                    let mut task = self.restored_task(partition, restoring.committed, &state, records)?;
                    task.changelog_end = end;
                    self.metrics.restore_seconds.observe(restoring.started.elapsed().as_secs_f64());
                    task
                }
            };
            self.start_task(consumer, task)?;
        }
        self.count_tasks();
        Ok(())
    }

    /// Puts a task to work: its input partitions sought to where it goes on from, and resumed.
    fn start_task<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, task: Task) -> Result<(), RunError> {
        let partition = task.partition;
        for (stream, topic) in self.topics.inputs().into_iter().enumerate() {
            let offset = task.next[stream].map_or(Offset::Beginning, Offset::Offset);
            consumer
                .seek(topic, partition, offset, KAFKA_TIMEOUT)
                .map_err(|e| RunError::kafka(&format!("seeking {topic}/{partition}"), e))?;
        }
        self.pause_inputs(consumer, partition, false)?;
        self.tasks.insert(partition, task);
        Ok(())
    }

    /// Pauses or resumes every input partition of task `partition`.
    fn pause_inputs<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partition: i32,
        paused: bool,
    ) -> Result<(), RunError> {
        for topic in self.topics.inputs() {
            set_paused(consumer, topic, partition, paused)?;
        }
        Ok(())
    }

    /// Shows the tasks held and being restored in the metrics and `/readyz`.
    fn count_tasks(&self) {
        self.metrics.tasks.set(self.tasks.len() as i64);
        self.health.restoring.store(self.restoring.len(), Ordering::Relaxed);
    }

    /// A task's engine rebuilt from its changelog's entries.
    fn restored_task(
        &mut self,
        partition: i32,
        committed: [Option<i64>; 3],
        state: &HashMap<String, String>,
        records: u64,
    ) -> Result<Task, RunError> {
        let mut engine = Engine::new(&self.config, now_millis());
        if self.topics.repartition.is_some() {
            engine.scale_out(partition as u32, self.partitions);
        }
        for update in &self.references {
            engine.apply_reference(update);
        }
        engine.assign(0);
        engine.track_changes();
        engine.keep_committed();
        self.metrics.restore_records.inc_by(records);
        let report = task::restore(&mut engine, partition, state)?;
        tracing::info!(partition, records, ?report, "task restored");
        Ok(Task::new(partition, engine, committed))
    }

    /// Rebalance: partitions assigned (callback of the consumer's poll). A task is created only
    /// when every one of its input partitions came to this instance: members that subscribe to
    /// different topics (a rollout from a version without the repartition stage) split a task
    /// between them, and two instances must never both process and commit one task. A split
    /// task waits, its records left unread and uncommitted, until a rebalance brings it whole.
    pub fn on_assign<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, assigned: &TopicPartitionList) {
        self.rebalances += 1;
        let elements: Vec<(String, i32)> =
            assigned.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        let (partitions, split) = whole_tasks(&elements, &self.topics.inputs());
        if let Some(grown) = partitions.iter().find(|p| **p >= self.partitions as i32) {
            // Partitions were added while the instance runs (the metadata of the subscribed
            // topics is read again every 30 s): the stores they take have state elsewhere.
            let now = (*grown as u32).saturating_add(1).max(self.partitions);
            self.fatal.get_or_insert(RunError::Config(task::partitions_changed(self.partitions, now)));
            return;
        }
        for (partition, topics) in &split {
            tracing::warn!(
                partition,
                assigned = ?topics,
                wanted = ?self.topics.inputs(),
                "the group's members disagree on the input topics (a rollout from another version?): task {partition} is split between instances and waits until it comes whole"
            );
        }
        // A task given up and not given back is another instance's now.
        self.suspended.retain(|partition, _| partitions.contains(partition));
        let result = self.begin_restores(consumer, &partitions);
        self.suspended.clear();
        // Ready only now: the tasks to restore are counted.
        self.health.assigned.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            self.fatal.get_or_insert(e);
        }
    }

    /// Rebalance: partitions about to be revoked. Everything is committed first, so the next
    /// owner starts exactly where this instance stopped.
    pub fn on_revoke<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, revoked: &TopicPartitionList) {
        self.rebalances += 1;
        if let Err(e) = self.commit(consumer) {
            self.fatal.get_or_insert(e);
            self.tasks.clear();
            self.restoring.clear();
            self.count_tasks();
            return;
        }
        for element in revoked.elements() {
            let partition = element.partition();
            if let Some(mut task) = self.tasks.remove(&partition) {
                self.release(consumer, &mut task);
                self.suspended.insert(partition, task);
            }
            // A reading under way is dropped with the partition (its pause goes with it).
            self.restoring.remove(&partition);
        }
        self.count_tasks();
    }
}

/// The outputs computed while a commit is in flight, held for the next transaction.
#[derive(Default)]
struct Held {
    /// Their estimated bytes ([`Output::held_bytes`]), and how many of them are counted.
    bytes: usize,
    counted: usize,
    /// The most bytes held at once.
    peak: usize,
    /// Whether every input is paused until the commit ends.
    inputs_paused: bool,
}

impl Held {
    /// Counts the outputs added since the last count.
    fn count(&mut self, outputs: &[Output]) {
        for output in outputs.get(self.counted..).unwrap_or_default() {
            self.bytes = self.bytes.saturating_add(output.held_bytes());
        }
        self.counted = outputs.len();
        self.peak = self.peak.max(self.bytes);
    }

    fn over(&self, budget: usize) -> bool {
        self.bytes > budget
    }
}

/// A task whose changelog is being read back.
struct Restoring {
    /// Its committed input offsets: where it goes on from.
    committed: [Option<i64>; 3],
    reader: ChangelogReader,
    /// The task as this instance left it, resumed if the changelog shows nothing since.
    suspended: Option<Task>,
    started: Instant,
}

/// The task numbers whose every input topic's partition is in `assigned`, and the others
/// with the topics of theirs that are (sorted by task).
fn whole_tasks(assigned: &[(String, i32)], inputs: &[&str]) -> (Vec<i32>, Vec<(i32, Vec<String>)>) {
    let mut by_task: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (topic, partition) in assigned {
        if inputs.contains(&topic.as_str()) {
            by_task.entry(*partition).or_default().push(topic.clone());
        }
    }
    let (mut whole, mut split) = (Vec::new(), Vec::new());
    for (task, mut topics) in by_task {
        topics.sort();
        topics.dedup();
        if topics.len() == inputs.len() { whole.push(task) } else { split.push((task, topics)) }
    }
    (whole, split)
}

/// The consumer's position in a partition: the offset after the last record (or transaction
/// marker) handed to the application, without a request; `None` before the first.
fn app_position<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partition: i32) -> Option<i64> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(topic, partition);
    // SAFETY: the client pointer is valid while `consumer` lives and `tpl` owns its list;
    // rd_kafka_position only writes the offsets of the list's elements (rdkafka's `position`
    // does the same for the whole assignment, a list built per call).
    let error = unsafe { rdkafka_sys::rd_kafka_position(consumer.client().native_ptr(), tpl.ptr()) };
    if error != rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Whether an input partition holds records past what the task has fetched: the consumer's
/// position (which passes transaction markers, unlike the offset after the last record) is
/// behind the end the last fetch response gave, or no fetch response gave one yet.
fn holds_more<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    fetched: Option<i64>,
) -> bool {
    let position = app_position(consumer, topic, partition).or(fetched).unwrap_or(0);
    cached_high_watermark(consumer, topic, partition).is_none_or(|high| position < high)
}

/// Pauses or resumes fetching one partition.
fn set_paused<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    paused: bool,
) -> Result<(), RunError> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(topic, partition);
    let result = if paused { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    result.map_err(|e| {
        RunError::kafka(&format!("{} {topic}/{partition}", if paused { "pausing" } else { "resuming" }), e)
    })
}

/// The high watermark of a partition as the consumer last saw it in a fetch response (no
/// request is made), or `None` before the first fetch.
pub fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; `topic` is NUL-terminated
    // and outlives the call; `low` and `high` are valid for writes. rdkafka does not wrap
    // this call (it reads the consumer's cached offsets under librdkafka's own lock).
    let error = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => {
            e.is_fatal()
                || matches!(e.code(), RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
        }
        _ => false,
    }
}

/// How long to wait before redoing the work after the `n`th abort in a row: none after the
/// first, then 0.2 s doubling up to 10 s.
fn abort_backoff(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    Duration::from_millis(100u64.saturating_mul(1 << (n - 1).min(10))).min(Duration::from_secs(10))
}

/// Cuts `text` to at most `max` bytes and a marker, at a character boundary.
fn cut_text(text: &mut String, max: usize) {
    const MARKER: &str = "...";
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARKER);
}

/// The output producer and, for a transactional one, its commit thread. A transactional one
/// has its transactions initialised (which fences an earlier producer of its id and aborts
/// that one's open transaction) and one begun.
fn start_producer(
    config: &ClientConfig,
    changelog: &str,
    transactional: bool,
    metrics: &Metrics,
) -> Result<(Arc<BaseProducer<DeliveryContext>>, Option<Committer>), RunError> {
    let producer: BaseProducer<DeliveryContext> = config
        .create_with_context(DeliveryContext::writing_changelog(changelog))
        .map_err(|e| RunError::kafka("creating the producer", e))?;
    if !transactional {
        return Ok((Arc::new(producer), None));
    }
    producer.init_transactions(Duration::from_secs(60)).map_err(|e| RunError::kafka("initialising transactions", e))?;
    producer.begin_transaction().map_err(|e| RunError::kafka("beginning a transaction", e))?;
    let producer = Arc::new(producer);
    let committer = Committer::spawn(producer.clone(), KAFKA_TIMEOUT, metrics.commit_phases())
        .map_err(|e| RunError::Config(format!("cannot start the commit thread: {e}")))?;
    Ok((producer, Some(committer)))
}

/// Sends a record, serving delivery reports while the producer's queue is full.
pub(super) fn send<K, P>(
    producer: &BaseProducer<DeliveryContext>,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), RunError>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(2));
            }
            // A failed transaction takes no more records. When a topic refused a record for
            // good, say so: the producer's state turns erroneous before that record's delivery
            // report is served, so serve the reports first.
            Err((e, record)) => {
                if let Some(refused) = refusal_reported(producer) {
                    return Err(refused);
                }
                if let Some(refusal) = e.rdkafka_error_code().and_then(Refusal::of) {
                    return Err(refusal.error(record.topic));
                }
                return Err(match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::State) => RunError::TransactionFailed(e),
                    e => RunError::kafka(&format!("producing a record to {}", record.topic), e),
                });
            }
        }
    }
}

/// How long a failed `send` waits for the delivery report that explains it.
const REPORT_WAIT: Duration = Duration::from_secs(2);

/// Serves delivery reports until one says a topic refused a record for good, or until none
/// is in flight, or [`REPORT_WAIT`] has passed.
fn refusal_reported(producer: &BaseProducer<DeliveryContext>) -> Option<RunError> {
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        if let Some(refused) = producer.context().refusal() {
            return Some(refused);
        }
        if producer.in_flight_count() == 0 || Instant::now() >= deadline {
            return None;
        }
        producer.poll(Duration::from_millis(10));
    }
}

/// The consumer's context: rebalances go to the worker, statistics to the lag metrics.
pub struct RebalanceContext {
    pub worker: Arc<Mutex<Worker>>,
    pub metrics: Arc<Metrics>,
}

impl ClientContext for RebalanceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // The processing loop gets the error from poll and logs, counts and shows it.
        super::client::log_consumer_error(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&vec![("topic", topic.clone()), ("partition", partition.to_string())])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            match self.worker.lock() {
                Ok(mut worker) => worker.on_revoke(consumer, revoked),
                Err(_) => tracing::error!("worker lock poisoned during revocation"),
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => match self.worker.lock() {
                Ok(mut worker) => worker.on_assign(consumer, assigned),
                Err(_) => tracing::error!("worker lock poisoned during assignment"),
            },
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_whole_only_with_every_input_partition() {
        let assigned: Vec<(String, i32)> =
            [("p.sales", 0), ("p.inventory", 0), ("p.repartition", 0), ("p.repartition", 1)]
                .into_iter()
                .map(|(t, p)| (t.to_string(), p))
                .collect();
        let (whole, split) = whole_tasks(&assigned, &["p.sales", "p.inventory", "p.repartition"]);
        assert_eq!(whole, vec![0]);
        assert_eq!(split, vec![(1, vec!["p.repartition".to_string()])]);
        let (whole, split) = whole_tasks(&assigned[..2], &["p.sales", "p.inventory"]);
        assert_eq!((whole, split.len()), (vec![0], 0), "one partition: no repartition topic");
    }

    #[test]
    fn aborts_in_a_row_back_off_up_to_ten_seconds() {
        let waits: Vec<u64> = (1..=10).map(|n| abort_backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [0, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000]);
        assert_eq!(abort_backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn a_topic_that_refuses_for_good_is_named() {
        assert_eq!(Refusal::of(RDKafkaErrorCode::UnknownTopic), Some(Refusal::UnknownTopic));
        assert_eq!(Refusal::of(RDKafkaErrorCode::UnknownTopicOrPartition), None, "the metadata check decides");
        assert_eq!(Refusal::of(RDKafkaErrorCode::MessageTimedOut), None, "a timeout is worth a retry");
        let message = Refusal::Unauthorized.error("p.alerts").to_string();
        assert!(message.starts_with("config: writing to topic p.alerts is not authorized"), "{message}");
    }

    #[test]
    fn a_long_header_is_cut_at_a_character_boundary_with_a_marker() {
        let mut short = "invalid_event_id".to_string();
        cut_text(&mut short, 16);
        assert_eq!(short, "invalid_event_id");
        // "é" is two bytes: a cut at byte 5 would split the third one.
        let mut long = "ééééé".to_string();
        cut_text(&mut long, 8);
        assert_eq!(long, "éé...");
        let mut ascii = "x".repeat(2000);
        cut_text(&mut ascii, MAX_HEADER_BYTES);
        assert_eq!(ascii.len(), MAX_HEADER_BYTES);
        assert!(ascii.ends_with("xx..."));
    }
}

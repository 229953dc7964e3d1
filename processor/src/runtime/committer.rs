//! Transactions committed on a thread of their own, so that the processing loop goes on with
//! the next records while the broker writes the last transaction's markers (a commit waits
//! for the outputs' deliveries, the offsets' commit to the group coordinator and the end of
//! the transaction: tens of milliseconds, three to ten times a second).
//!
//! While a commit is in flight the producer takes no record (a transactional producer has one
//! transaction at a time): the worker holds the outputs of the records it processes meanwhile
//! and sends them once the next transaction has begun.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::worker::DeliveryContext;

/// One transaction to commit: the input offsets it covers, and the group they belong to.
struct Job {
    offsets: TopicPartitionList,
    group: ConsumerGroupMetadata,
}

/// A commit that has ended, with what the worker needs to account for it.
pub struct Ended {
    /// `None` when the commit thread stopped without an answer (it panicked): the
    /// transaction is in doubt, and the worker ends the run.
    pub result: Option<Result<(), KafkaError>>,
    /// When the worker handed it over.
    pub started: Instant,
    /// The input timestamps of the records it covers (end-to-end latency).
    pub timestamps: Vec<i64>,
}

/// The commit thread of one transactional producer, and the commit in flight on it.
pub struct Committer {
    jobs: Option<Sender<Job>>,
    results: Receiver<Result<(), KafkaError>>,
    in_flight: Option<(Instant, Vec<i64>)>,
    ended: Option<Ended>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread; `phases` times each phase of a commit (see [`Phases`]).
    pub fn spawn(
        producer: Arc<BaseProducer<DeliveryContext>>,
        timeout: Duration,
        phases: Phases,
    ) -> std::io::Result<Self> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (outbox, results) = mpsc::channel();
        let thread = std::thread::Builder::new().name("commit".into()).spawn(move || {
            for job in inbox {
                if outbox.send(commit(&producer, &job, timeout, &phases)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Committer { jobs: Some(jobs), results, in_flight: None, ended: None, thread: Some(thread) })
    }

    /// Whether a commit was handed over and its end not yet taken.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || self.ended.is_some()
    }

    /// Hands a transaction over. The caller has sent every record of it, and sends none until
    /// the commit has ended and the next transaction begun.
    pub fn start(&mut self, offsets: TopicPartitionList, group: ConsumerGroupMetadata, timestamps: Vec<i64>) {
        debug_assert!(!self.busy(), "one commit at a time");
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(Job { offsets, group }).is_ok());
        self.in_flight = Some((Instant::now(), timestamps));
        if !sent {
            self.end(None);
        }
    }

    /// Whether the commit in flight has ended (its end is kept for [`Committer::take_ended`]).
    pub fn has_ended(&mut self) -> bool {
        if self.ended.is_none() && self.in_flight.is_some() {
            match self.results.try_recv() {
                Ok(result) => self.end(Some(result)),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.end(None),
            }
        }
        self.ended.is_some()
    }

    /// The end of the commit in flight, if it has ended.
    pub fn take_ended(&mut self) -> Option<Ended> {
        self.has_ended();
        self.ended.take()
    }

    /// Waits for the commit in flight to end; `None` when there is none.
    pub fn wait(&mut self) -> Option<Ended> {
        if self.ended.is_none() && self.in_flight.is_some() {
            let result = self.results.recv().ok();
            self.end(result);
        }
        self.ended.take()
    }

    fn end(&mut self, result: Option<Result<(), KafkaError>>) {
        if let Some((started, timestamps)) = self.in_flight.take() {
            self.ended = Some(Ended { result, started, timestamps });
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once the commit in flight (if any) ends.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The histograms of a commit's phases: the outputs delivered, the input offsets added to the
/// transaction, the transaction ended.
pub struct Phases {
    pub deliver: Histogram,
    pub offsets: Histogram,
    pub end: Histogram,
}

fn commit(
    producer: &BaseProducer<DeliveryContext>,
    job: &Job,
    timeout: Duration,
    phases: &Phases,
) -> Result<(), KafkaError> {
    let mut started = Instant::now();
    let mut timed = |histogram: &Histogram| {
        let now = Instant::now();
        histogram.observe(now.duration_since(started).as_secs_f64());
        started = now;
    };
    // Delivered first, so that the commit's own flush finds nothing to wait for.
    flush(producer, timeout)?;
    timed(&phases.deliver);
    if job.offsets.count() > 0 {
        producer.send_offsets_to_transaction(&job.offsets, &job.group, timeout)?;
    }
    timed(&phases.offsets);
    producer.commit_transaction(timeout)?;
    timed(&phases.end);
    Ok(())
}

/// Waits until every record sent is delivered, serving delivery reports as they come.
/// (rdkafka's own flush serves them in 100 ms slices, since its poll runs to the end of its
/// timeout: that cost every commit 100 ms. Its poll with a short timeout spins through the
/// last millisecond, which made a commit's wait cost CPU; this one sleeps between polls.)
pub fn flush(producer: &BaseProducer<DeliveryContext>, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        producer.poll(Duration::ZERO);
        if producer.in_flight_count() == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        std::thread::sleep(Duration::from_micros(250));
    }
}

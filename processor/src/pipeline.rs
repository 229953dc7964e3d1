//! The loop that drives an engine between a source and a sink:
//! reference updates -> poll -> process -> tick -> flush -> write -> commit.
//!
//! Each step ends at a commit boundary: outputs and input positions go to the sink together,
//! which is where a transactional sink makes the step exactly-once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::{Engine, InputRecord};
use crate::output::Output;
use crate::sink::{Position, Sink};
use crate::source::{IoError, ReferenceSource, Source, SourceRecord};

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    pub records: usize,
    pub outputs: usize,
}

/// Sees every output before it is written.
pub type Observer = Box<dyn FnMut(&Output)>;

pub struct Pipeline<S, K> {
    pub engine: Engine,
    source: S,
    sink: K,
    references: Option<Box<dyn ReferenceSource>>,
    streams: HashMap<(Arc<str>, i32), usize>,
    batch: usize,
    records: Vec<SourceRecord>,
    outputs: Vec<Output>,
    reference_updates: Vec<crate::reference::ReferenceUpdate>,
    /// Receives a copy of every output before it is written (the demo's dashboard).
    observer: Option<Observer>,
}

impl<S: Source, K: Sink> Pipeline<S, K> {
    pub fn new(engine: Engine, source: S, sink: K, batch: usize) -> Self {
        let mut pipeline = Pipeline {
            engine,
            source,
            sink,
            references: None,
            streams: HashMap::new(),
            batch: batch.max(1),
            records: Vec::new(),
            outputs: Vec::new(),
            reference_updates: Vec::new(),
            observer: None,
        };
        for (topic, partition) in pipeline.source.assignment() {
            pipeline.stream(&topic, partition);
        }
        pipeline
    }

    pub fn with_references(mut self, references: Box<dyn ReferenceSource>) -> Self {
        self.references = Some(references);
        self
    }

    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    fn stream(&mut self, topic: &Arc<str>, partition: i32) -> usize {
        let next = self.streams.len();
        let engine = &mut self.engine;
        *self.streams.entry((topic.clone(), partition)).or_insert_with(|| {
            engine.assign(next);
            next
        })
    }

    /// Runs one step at processing time `now`.
    pub fn step(&mut self, now: i64) -> Result<StepReport, IoError> {
        if let Some(references) = self.references.as_mut() {
            references.poll(&mut self.reference_updates)?;
            for update in self.reference_updates.drain(..) {
                self.engine.apply_reference(&update);
            }
        }
        self.engine.tick(now, &mut self.outputs);
        self.records.clear();
        self.source.poll(self.batch, &mut self.records)?;
        let mut positions: HashMap<(Arc<str>, i32), i64> = HashMap::new();
        let records = std::mem::take(&mut self.records);
        for record in &records {
            let stream = self.stream(&record.topic, record.partition);
            let input = InputRecord {
                stream,
                topic: &record.topic,
                partition: record.partition,
                offset: record.offset,
                payload: &record.payload,
            };
            self.engine.process(&input, &mut self.outputs);
            positions.insert((record.topic.clone(), record.partition), record.offset + 1);
        }
        if self.source.is_finished() {
            self.engine.finish(&mut self.outputs);
        } else {
            self.engine.flush(&mut self.outputs);
        }
        let report = StepReport { records: records.len(), outputs: self.outputs.len() };
        self.records = records;
        if let Some(observer) = self.observer.as_mut() {
            self.outputs.iter().for_each(observer);
        }
        self.sink.write(&self.outputs)?;
        self.outputs.clear();
        let mut positions: Vec<Position> = positions
            .into_iter()
            .map(|((topic, partition), next_offset)| Position { topic, partition, next_offset })
            .collect();
        positions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        self.sink.commit(&positions)?;
        Ok(report)
    }

    /// Steps until the source is finished (a file); `now` is the processing time.
    pub fn run_to_end(&mut self, now: i64) -> Result<(), IoError> {
        while !self.source.is_finished() {
            self.step(now)?;
        }
        Ok(())
    }
}

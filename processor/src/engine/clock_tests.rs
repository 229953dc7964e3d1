//! One event-time clock for the pipeline, across tasks: tasks exchange partials and
//! watermarks as the runtime's repartition topic carries them, with processing time given by
//! ticks. A task whose inputs went quiet takes the other tasks' clock, so its own windows and
//! its partials close with the rest, and a merged window never fires without a task's part.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::tests::{at, sale};
use super::*;
use crate::config::PipelineConfig;
use crate::reference::StoreRecord;

const CONFIG: &str = r#"
name: t
processing:
  groupBy: [store, sku]
  windows:
    - {name: w5, type: tumbling, size: 5m}
    - {name: region-5m, type: tumbling, size: 5m, groupBy: [region]}
  maxOutOfOrderness: 1m
  allowedLateness: 10m
  idleTimeout: 1m
  maxFutureSkew: 15m
  dedupe: {horizon: 1h}
"#;

fn store(id: &str) -> StoreRecord {
    StoreRecord {
        store_id: id.into(),
        name: id.into(),
        region: "EU".into(),
        channel: crate::event::Channel::Physical,
        format: "flagship".into(),
        city: "Berlin".into(),
        country: "DE".into(),
        timezone: "Europe/Berlin".into(),
        currency: "EUR".into(),
    }
}

/// Tasks of one pipeline and the repartition topic between them, delivered at once.
struct Pipeline {
    tasks: Vec<Engine>,
    topic: Arc<str>,
    offset: i64,
    /// The last value of every aggregate key, and how many records each key had.
    aggregates: BTreeMap<String, (i64, u32)>,
    emitted: BTreeMap<String, u32>,
}

impl Pipeline {
    fn new(tasks: u32, now: i64) -> Self {
        let config = PipelineConfig::from_text(CONFIG, "test").unwrap();
        let engines = (0..tasks)
            .map(|task| {
                let mut engine = Engine::new(&config, now);
                engine.scale_out(task, tasks);
                for id in ["S1", "S2", "S3"] {
                    engine.apply_reference(&ReferenceUpdate::Store(store(id)));
                }
                engine.assign(0);
                engine
            })
            .collect();
        Pipeline {
            tasks: engines,
            topic: Arc::from("t.sales"),
            offset: 0,
            aggregates: BTreeMap::new(),
            emitted: BTreeMap::new(),
        }
    }

    fn feed(&mut self, task: usize, payloads: &[String]) {
        let mut out = Vec::new();
        for payload in payloads {
            let input = InputRecord {
                stream: 0,
                topic: &self.topic,
                partition: task as i32,
                offset: self.offset,
                payload: payload.as_bytes(),
            };
            self.offset += 1;
            self.tasks[task].process(&input, &mut out);
        }
        self.deliver(out);
    }

    fn tick(&mut self, task: usize, now: i64) {
        let mut out = Vec::new();
        self.tasks[task].tick(now, &mut out);
        self.deliver(out);
    }

    /// A commit: every task's watermark goes to every task, then what that sets off.
    fn commit(&mut self) {
        for _ in 0..4 {
            let reports: Vec<RepartitionRecord> = (0..self.tasks.len())
                .map(|task| {
                    let (watermark, idle) = self.tasks[task].watermark_report();
                    RepartitionRecord::Watermark { task: task as u32, watermark, idle }
                })
                .collect();
            for report in reports {
                for owner in 0..self.tasks.len() {
                    self.merge_in(owner, &report);
                }
            }
        }
    }

    fn merge_in(&mut self, owner: usize, record: &RepartitionRecord) {
        let payload = serde_json::to_vec(record).unwrap();
        let topic: Arc<str> = Arc::from("t.repartition");
        let input = InputRecord { stream: 0, topic: &topic, partition: owner as i32, offset: 0, payload: &payload };
        let mut out = Vec::new();
        self.tasks[owner].merge_input(&input, &mut out);
        self.deliver(out);
    }

    /// Partials go to the task that owns their key; aggregates are kept, last value per key.
    fn deliver(&mut self, out: Vec<Output>) {
        for output in out {
            match output {
                Output::Partial(partial) => {
                    let owner = crate::partitioner::partition_of(partial.key().as_bytes(), self.tasks.len() as u32);
                    self.merge_in(owner as usize, &RepartitionRecord::Partial(Box::new(partial)));
                }
                Output::Aggregate(record) => {
                    *self.emitted.entry(record.key()).or_insert(0) += 1;
                    self.aggregates.insert(record.key(), (record.units_sold, record.revision));
                }
                Output::DeadLetter(record) => panic!("dead letter: {}", record.reason),
                _ => {}
            }
        }
    }

    fn units(&self, key: &str) -> Option<(i64, u32)> {
        self.aggregates.get(key).copied()
    }
}

/// Store S2 (task 1) stops selling at 10:06 while S1 (task 0) trades on: once task 1 has been
/// silent for the idle timeout it takes task 0's clock, its own 10:05 window fires, and the
/// region's 10:05 window fires once, with both stores' sales.
#[test]
fn a_quiet_task_closes_its_windows_with_the_rest_and_merged_windows_wait_for_its_part() {
    let mut pipeline = Pipeline::new(2, at("12:00:00"));
    pipeline.feed(1, &[sale(1, "10:01:00", "S2", 2, "1.00"), sale(2, "10:06:00", "S2", 3, "1.00")]);
    pipeline.feed(
        0,
        &[
            sale(3, "10:02:00", "S1", 1, "1.00"),
            sale(4, "10:08:00", "S1", 1, "1.00"),
            sale(5, "10:12:00", "S1", 1, "1.00"),
            sale(6, "10:20:00", "S1", 1, "1.00"),
        ],
    );
    pipeline.commit();
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:00:00Z|EU|EUR"), Some((3, 2)), "both parts of 10:00");
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:05:00Z|EU|EUR"), None, "task 1 stands at 10:05");
    assert_eq!(pipeline.units("w5|2026-11-27T10:05:00Z|S2|K1|EUR"), None);

    // S1 goes on; S2's task is silent for the idle timeout, with nothing left to process.
    pipeline.tick(0, at("12:00:30"));
    pipeline.feed(0, &[sale(7, "10:21:00", "S1", 1, "1.00")]);
    pipeline.tick(1, at("12:01:00"));
    pipeline.tick(0, at("12:01:00"));
    pipeline.commit();
    assert_eq!(pipeline.tasks[1].watermark(), at("10:20:00"), "task 1 took task 0's clock");
    assert_eq!(pipeline.units("w5|2026-11-27T10:05:00Z|S2|K1|EUR"), Some((3, 1)), "the quiet store's window");
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:05:00Z|EU|EUR"), Some((4, 2)), "S1's 1 and S2's 3");
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:10:00Z|EU|EUR"), Some((1, 1)), "task 1 said it has none");
    assert_eq!(pipeline.emitted.get("region-5m|2026-11-27T10:05:00Z|EU|EUR"), Some(&1), "fired once, complete");
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:20:00Z|EU|EUR"), None, "not past the watermark");
}

/// A task with records still to process is never idle, however long since its last event:
/// it neither takes another task's clock nor lets a merged window fire without its part.
#[test]
fn a_task_with_a_backlog_keeps_its_own_clock() {
    let mut pipeline = Pipeline::new(2, at("12:00:00"));
    pipeline.feed(1, &[sale(1, "10:06:00", "S2", 3, "1.00")]);
    pipeline.feed(0, &[sale(2, "10:08:00", "S1", 1, "1.00"), sale(3, "10:30:00", "S1", 1, "1.00")]);
    pipeline.commit();
    pipeline.tasks[1].backlog(at("12:00:50"));
    pipeline.tick(0, at("12:00:40"));
    pipeline.feed(0, &[sale(4, "10:31:00", "S1", 1, "1.00")]);
    pipeline.tick(1, at("12:01:10"));
    pipeline.commit();
    assert_eq!(pipeline.tasks[1].watermark(), at("10:05:00"));
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:05:00Z|EU|EUR"), None);
    // Its backlog done and silent for the idle timeout since: it takes the clock.
    pipeline.tick(1, at("12:01:50"));
    pipeline.commit();
    assert_eq!(pipeline.tasks[1].watermark(), at("10:30:00"));
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:05:00Z|EU|EUR"), Some((4, 2)));
}

/// When every task is quiet (a store network closed at night), every task follows the most
/// advanced one: each window the last events passed fires, everywhere, and none beyond.
#[test]
fn a_quiet_night_closes_every_window_the_last_events_passed() {
    let mut pipeline = Pipeline::new(3, at("12:00:00"));
    pipeline.feed(0, &[sale(1, "10:02:00", "S1", 1, "1.00"), sale(2, "10:14:00", "S1", 1, "1.00")]);
    pipeline.feed(1, &[sale(3, "10:03:00", "S2", 2, "1.00"), sale(4, "10:07:00", "S2", 2, "1.00")]);
    pipeline.feed(2, &[sale(5, "10:04:00", "S3", 4, "1.00")]);
    pipeline.commit();
    for task in 0..3 {
        pipeline.tick(task, at("12:01:00"));
    }
    pipeline.commit();
    for task in 0..3 {
        assert_eq!(pipeline.tasks[task].watermark(), at("10:13:00"), "task {task}");
    }
    assert_eq!(pipeline.units("w5|2026-11-27T10:05:00Z|S2|K1|EUR"), Some((2, 1)));
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:00:00Z|EU|EUR"), Some((7, 3)));
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:05:00Z|EU|EUR"), Some((2, 1)), "S2's part alone");
    assert_eq!(pipeline.units("w5|2026-11-27T10:10:00Z|S1|K1|EUR"), None, "10:15 is past the last event's watermark");
}

/// A task that has not reported yet (its instance not started) holds every merged window and
/// every quiet task back: nobody can know that it has nothing.
#[test]
fn a_task_never_heard_from_holds_the_clock() {
    let mut pipeline = Pipeline::new(2, at("12:00:00"));
    pipeline.feed(0, &[sale(1, "10:02:00", "S1", 1, "1.00"), sale(2, "10:20:00", "S1", 1, "1.00")]);
    let report = {
        let (watermark, idle) = pipeline.tasks[0].watermark_report();
        RepartitionRecord::Watermark { task: 0, watermark, idle }
    };
    pipeline.merge_in(0, &report);
    pipeline.tick(0, at("12:01:00"));
    assert_eq!(pipeline.units("region-5m|2026-11-27T10:00:00Z|EU|EUR"), None);
    assert_eq!(pipeline.tasks[0].watermark(), at("10:19:00"), "its own clock, no further");
}

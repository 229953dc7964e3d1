//! One event-time clock for the pipeline, on a real Apache Kafka broker, in the conditions a
//! store network creates: after a backlog, one store trades on while every other partition
//! goes quiet. No sentinel closes the quiet partitions: each quiet task must take the clock of
//! the task that still has events, close its own windows, and send its part of every window
//! merged across tasks before that window fires. The figures of every window the trading
//! store's watermark has passed must equal `replay --partitions N` of the same events, exactly
//! (revisions included), within the idle timeout and a few commits; and so after instances
//! were killed mid-backlog and restarted under the same and under new names.
//!
//! The idle timeout is 5 s here (the setting under test; the default is 1 minute).

mod support;

use std::time::{Duration, Instant};

use stockpulse_testkit::kafka::Kafka;
use support::figures::{differences, ended_by, from_kafka, from_replay};
use support::{Pipeline, Processor, last_values};

const FIVE_MINUTES: i64 = 300_000;

fn rfc3339(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A pipeline on `partitions` partitions with the 5-s idle timeout, and its backlog of
/// generated traffic; the latest event time.
fn quiet_pipeline(kafka: &Kafka, name: &str, partitions: i32, seed: u64, events: usize) -> (Pipeline, i64) {
    let mut pipeline = Pipeline::create(&kafka.bootstrap, name, partitions);
    pipeline.configure("idleTimeout: 1h", "idleTimeout: 5s");
    let last = pipeline.produce_traffic(seed, events);
    (pipeline, last)
}

/// The backlog is done; now the store of partition 0 trades on, two hours after the backlog,
/// one event every 500 ms, while every other partition stays quiet. Waits until the windows
/// that end before the trading resumed are out and equal replay's (60 s at most), and returns
/// how long that took. Then the trading stops, and inventory, dead letters and late events are
/// compared with replay's too.
fn one_store_trades_on(pipeline: &mut Pipeline, last: i64, processors: &mut [&mut Processor]) -> Duration {
    pipeline.wait_caught_up(Duration::from_secs(240), processors);
    // Every window of the backlog ends by `closed`; the trading store's events come after it.
    let closed = (last + 2 * 3_600_000).div_euclid(FIVE_MINUTES) * FIVE_MINUTES + FIVE_MINUTES;
    let expected = ended_by(&from_replay(pipeline).aggregates, &rfc3339(closed));
    let merged = expected.keys().filter(|k| k.starts_with("region-channel-5m|")).count();
    assert!(expected.len() > 1_000 && merged > 20, "{} windows, {merged} merged across tasks", expected.len());
    let started = Instant::now();
    let mut n = 0;
    let took = loop {
        for p in processors.iter_mut() {
            p.assert_running();
        }
        // 200 events, about 3 minutes of event time: all inside the window after `closed`.
        pipeline.produce_restock(0, n, closed + 60_000 + n * 500);
        n += 1;
        let got = ended_by(&last_values(&pipeline.read_topic("aggregates")), &rfc3339(closed));
        let Some(difference) = differences("aggregates", &got, &expected) else { break started.elapsed() };
        assert!(started.elapsed() < Duration::from_secs(60) && n < 200, "after {n} events: {difference}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("the quiet partitions' windows were out {took:?} after the trading store's first event ({n} events)");
    pipeline.wait_caught_up(Duration::from_secs(60), processors);
    let (kafka, replay) = (from_kafka(pipeline), from_replay(pipeline));
    assert_eq!(differences("inventory", &kafka.inventory, &replay.inventory), None);
    assert_eq!(kafka.dead_letters, replay.dead_letters, "dead letters");
    assert_eq!(kafka.late, replay.late, "late events");
    took
}

#[test]
fn one_store_trades_on_while_the_other_partitions_are_quiet_on_one_and_on_two_instances() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let (mut pipeline, last) = quiet_pipeline(kafka, "quiet-1", 4, 41, 20_000);
    let mut one = pipeline.start("quiet-1-a");
    one.address(Duration::from_secs(30));
    one_store_trades_on(&mut pipeline, last, &mut [&mut one]);
    one.terminate(Duration::from_secs(20));

    let (mut pipeline, last) = quiet_pipeline(kafka, "quiet-2", 4, 43, 20_000);
    let mut a = pipeline.start("quiet-2-a");
    let mut b = pipeline.start("quiet-2-b");
    a.address(Duration::from_secs(30));
    b.address(Duration::from_secs(30));
    one_store_trades_on(&mut pipeline, last, &mut [&mut a, &mut b]);
    a.terminate(Duration::from_secs(20));
    b.terminate(Duration::from_secs(20));
}

/// An instance killed four times while it works through the backlog, restarted twice under
/// its own name (a container restart: the same transactional id) and twice under a new one (a
/// rescheduled pod): every restored task starts active, so no merged window fires without
/// its part, and the quiet partitions close their windows after as before.
#[test]
fn kills_mid_backlog_under_the_same_and_new_names_leave_the_figures_exact() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let (mut pipeline, last) = quiet_pipeline(kafka, "quiet-kill", 3, 47, 60_000);
    let mut seed: u64 = 0x9e37;
    let mut progress = Vec::new();
    for (round, instance) in ["kill-a", "kill-a", "kill-b", "kill-b"].into_iter().enumerate() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(2_000 + seed % 3_000);
        let mut processor = pipeline.start(instance);
        processor.address(Duration::from_secs(30));
        std::thread::sleep(after);
        processor.assert_running();
        processor.kill();
        let (done, total) = pipeline.committed_progress();
        eprintln!("round {round} ({instance}): killed after {after:?}, {done} of {total} input records committed");
        progress.push((done, total));
    }
    assert!(progress.iter().filter(|(done, total)| *done > 0 && done < total).count() >= 2, "{progress:?}");
    let mut last_instance = pipeline.start("kill-c");
    last_instance.address(Duration::from_secs(30));
    one_store_trades_on(&mut pipeline, last, &mut [&mut last_instance]);
    last_instance.terminate(Duration::from_secs(20));
}

/// A quiet night: the input stops on every partition. Each task turns idle once it is caught
/// up and silent for the idle timeout, takes the most advanced task's watermark, and every
/// window that the last events' watermark passed is out, merged ones included, equal to
/// replay's; none beyond it.
#[test]
fn a_quiet_night_closes_every_window_the_last_events_passed() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let (pipeline, last) = quiet_pipeline(kafka, "quiet-night", 3, 53, 20_000);
    let mut processor = pipeline.start("quiet-night-a");
    processor.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(240), &mut [&mut processor]);
    let caught_up = Instant::now();
    // The most advanced partition's watermark: the latest event time less maxOutOfOrderness.
    let watermark = rfc3339(last - 30_000);
    let replay = from_replay(&pipeline).aggregates;
    let expected = ended_by(&replay, &watermark);
    assert!(expected.len() < replay.len(), "some windows lie beyond the last events' watermark");
    loop {
        processor.assert_running();
        let got = last_values(&pipeline.read_topic("aggregates"));
        let beyond: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).take(3).collect();
        assert!(beyond.is_empty(), "windows past the watermark fired: {beyond:?}");
        let Some(difference) = differences("aggregates", &got, &expected) else { break };
        assert!(caught_up.elapsed() < Duration::from_secs(60), "{difference}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("every window out {:?} after the input was caught up", caught_up.elapsed());
    processor.terminate(Duration::from_secs(20));
}

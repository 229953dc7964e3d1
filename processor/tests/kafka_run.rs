//! `stockpulse-processor run` on a real Apache Kafka broker (KRaft, started by the test):
//! exactly-once outputs equal `replay` of the same events; a crash at any point loses and
//! doubles nothing; several instances give the figures of one; SIGTERM exits cleanly.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use stockpulse_testkit::kafka::Kafka;
use support::figures::{Figures, assert_same, from_kafka, from_replay};
use support::{Pipeline, Processor, http_get};

#[test]
fn exactly_once_outputs_equal_replay_of_the_same_events() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "eq", 4);
    pipeline.produce_events(21, 20_000);
    let mut processor = pipeline.start("eq-0");
    let address = processor.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    let (status, body) = http_get(&address, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (status, metrics) = http_get(&address, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("stockpulse_processor_events_total{outcome=\"in\"} 20008"), "{metrics}");
    assert!(metrics.contains("stockpulse_processor_transactions_total{result=\"committed\"}"), "{metrics}");
    let (status, _) = terminate(&mut processor);
    assert!(status.success());
    let replay = from_replay(&pipeline);
    for rule in ["lowStock", "stuckInventory", "salesSpike", "amountOutlier"] {
        let fired = replay.alerts.values().filter(|v| v["rule"] == rule).count();
        assert!(fired > 0, "the input fires {rule}, so the alerts of every rule are compared");
    }
    assert_same(&from_kafka(&pipeline), &replay);
}

#[test]
fn a_stalled_broker_delays_figures_and_changes_none() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "stall", 4);
    pipeline.produce_events(33, 60_000);
    // Small task buffers, so that waiting tasks pause and resume their other partition.
    let mut processor = pipeline.start_with("stall-0", &["--max-buffered-records", "300"]);
    let address = processor.address(Duration::from_secs(30));
    // Stall the broker twice while the backlog is worked through: each time some task has
    // records of one partition and waits for the other's next fetch, which takes longer
    // than any fixed wait a task could give up after.
    while pipeline.committed_progress().0 == 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..2 {
        kafka.stall(Duration::from_secs(5));
        processor.assert_running();
        std::thread::sleep(Duration::from_secs(1));
    }
    let (done, total) = pipeline.committed_progress();
    assert!(done < total, "the stalls fell in the middle of the work: {done} of {total} committed");
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    let pauses = metric(&address, "stockpulse_processor_partition_pauses_total");
    assert!(pauses > 0, "partitions were paused and resumed: {pauses}");
    terminate(&mut processor);
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

#[test]
fn a_broker_away_longer_than_the_delivery_timeout_fails_a_transaction_which_is_aborted_and_redone() {
    // Commits every 100 ms: most often a commit meets the failed deliveries.
    let log = broker_outage("outage", 150_000, &[]);
    assert!(log.contains("transaction failed; aborting it and restoring every task"), "{log}");
}

#[test]
fn a_send_into_a_failed_transaction_aborts_it_and_the_instance_goes_on() {
    // No commit for 5 s (the longest interval the 10-s transaction timeout allows): the failed
    // deliveries are mostly met by the next send, which the failed transaction refuses
    // ("Erroneous state"), not by a commit.
    let log = broker_outage("outage-send", 200_000, &["--commit-interval", "5s"]);
    let abort = log.lines().find(|l| l.contains("aborting it and restoring every task")).unwrap_or_default();
    assert!(abort.contains("Erroneous state"), "{abort}");
}

/// Outputs wait at most 2 s for the broker, which stops for 4 s while the backlog is worked
/// through. The deliveries in flight fail, the transaction with them: the instance aborts it,
/// rebuilds every task from the changelog, redoes the work from the committed offsets, and
/// runs on (no exit, no restart). The figures are replay's. A stop that falls where nothing is
/// in flight (a commit waits for the broker, the loop for a fetch) fails nothing: the broker
/// is stopped again then. Returns the instance's log.
fn broker_outage(name: &str, events: usize, args: &[&str]) -> String {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, name, 2);
    pipeline.produce_events(37, events);
    let instance = format!("{name}-0");
    let mut processor = pipeline.start_with(&instance, &[&["--delivery-timeout", "2s"], args].concat());
    let address = processor.address(Duration::from_secs(30));
    let aborted = || metric(&address, "stockpulse_processor_transactions_total{result=\"aborted\"}");
    while metric(&address, "stockpulse_processor_outputs_total") < 5_000 {
        processor.assert_running();
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed_deliveries = || {
        let log = std::fs::read_to_string(&processor.log).unwrap_or_default();
        log.contains("output record not delivered")
    };
    let mut stops = 0;
    while !failed_deliveries() && stops < 8 {
        let (done, total) = pipeline.committed_progress();
        assert!(done < total, "the broker stops in the middle of the work: {done} of {total} committed");
        kafka.stall(Duration::from_secs(4));
        stops += 1;
        // The delivery reports of the timed-out records come as the broker answers again.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !failed_deliveries() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The failed transaction is aborted once the broker is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while aborted() == 0 && Instant::now() < deadline {
        processor.assert_running();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(aborted() > 0, "no transaction aborted after {stops} stops of the broker\n{}", processor.log_tail());
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    let (status, _) = terminate(&mut processor);
    assert!(status.success(), "exit status {status}: {}", processor.log_tail());
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
    std::fs::read_to_string(&processor.log).unwrap_or_default()
}

/// The sum of an instance's metric series whose line starts with `prefix` (0 when none does).
fn metric(address: &str, prefix: &str) -> u64 {
    let (_, metrics) = http_get(address, "/metrics");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| rest.rsplit(' ').next()?.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn sigterm_under_load_exits_cleanly_and_a_restart_finishes_the_work() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "term", 2);
    pipeline.produce_events(5, 30_000);
    let mut processor = pipeline.start("term-0");
    processor.address(Duration::from_secs(30));
    // Stop it while it works through the backlog.
    std::thread::sleep(Duration::from_secs(4));
    processor.assert_running();
    let (status, took) = terminate(&mut processor);
    assert!(status.success(), "exit status {status}: {}", processor.log_tail());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // A transaction left open would hold read_committed readers back; a second instance
    // takes over where the first committed and the result is the same as replay's.
    pipeline.run_to_the_end("term-1");
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

fn terminate(processor: &mut Processor) -> (std::process::ExitStatus, Duration) {
    processor.terminate(Duration::from_secs(20))
}

#[test]
fn sigkill_at_five_points_loses_and_doubles_nothing() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "crash", 3);
    pipeline.produce_events(9, 100_000);
    // Kill points in milliseconds after start, from a fixed seed: the same run each time.
    let mut seed: u64 = 0x5eed;
    let mut progress = Vec::new();
    for round in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(1_500 + seed % 2_000);
        // The same instance id each time: a restart fences its predecessor's transaction.
        let mut processor = pipeline.start("crash-0");
        processor.address(Duration::from_secs(30));
        std::thread::sleep(after);
        processor.assert_running();
        processor.kill();
        let (done, total) = pipeline.committed_progress();
        eprintln!("round {round}: killed after {after:?}, {done} of {total} input records committed");
        progress.push((done, total));
    }
    // The kills fell in the middle of the work: each run committed some, none all of it.
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "{progress:?}");
    assert!(progress.iter().filter(|(done, total)| *done > 0 && done < total).count() >= 3, "{progress:?}");
    let mut last = pipeline.start("crash-0");
    let address = last.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(240), &mut [&mut last]);
    support::wait_ready(&address, Duration::from_secs(60));
    // The read API of the restored state answers every position as replay computes it.
    let replay = from_replay(&pipeline);
    for (key, expected) in replay.inventory.iter().step_by(53) {
        let (status, body) = http_get(&address, &format!("/v1/inventory/{}", key.replace('|', "/")));
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(&serde_json::from_str::<Value>(&body).unwrap(), expected, "{key}");
    }
    terminate(&mut last);
    assert_same(&from_kafka(&pipeline), &replay);
}

#[test]
fn one_two_and_three_instances_give_the_same_figures() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "scale", 6);
    pipeline.produce_events(13, 60_000);
    // Three instances share the partitions; one is stopped mid-run and the other two take
    // its partitions over, restored from the changelog.
    let mut a = pipeline.start("scale-a");
    let mut b = pipeline.start("scale-b");
    let mut c = pipeline.start("scale-c");
    for p in [&a, &b, &c] {
        p.address(Duration::from_secs(30));
    }
    // Stop the third once a tenth of the input is committed.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while pipeline.committed_progress().0 * 10 < pipeline.committed_progress().1 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        c.assert_running();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = terminate(&mut c);
    assert!(status.success());
    let (done, total) = pipeline.committed_progress();
    assert!(done < total, "the third instance stopped mid-run ({done} of {total})");
    pipeline.wait_caught_up(Duration::from_secs(240), &mut [&mut a, &mut b]);
    let address = a.address(Duration::from_secs(1));
    let (_, metrics) = http_get(&address, "/metrics");
    assert!(metrics.contains("stockpulse_processor_tasks "), "{metrics}");
    terminate(&mut a);
    terminate(&mut b);
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

#[test]
fn poison_input_is_dead_lettered_and_processing_goes_on() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "poison", 2);
    let event = |id: u32, fields: &str| {
        format!(
            r#"{{"event_id":"00000000-0000-4000-8000-{id:012}","event_type":"SALE","event_time":"2026-11-27T10:00:00Z","store_id":"EUC-M01","sku_id":"SKU-000001","currency":"EUR",{fields}}}"#
        )
        .into_bytes()
    };
    let mut huge = event(1, r#""quantity_delta":-1,"unit_price":"1.00","metadata":""#);
    huge.truncate(huge.len() - 1);
    huge.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    huge.extend_from_slice(b"\"}");
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (b"\x00\xff\xfe garbage".to_vec(), "not_json"),
        (b"{\"event_id\": tru".to_vec(), "not_json"),
        (vec![0xc3, 0x28, b'{', b'}'], "not_json"),
        (huge, "5 MB"),
        (event(2, r#""quantity_delta":-1,"unit_price":"50000000000000000000000000000""#), "unit_price_out_of_range"),
        (event(3, r#""quantity_delta":-1,"unit_price":"50000000000000000000000000000""#), "unit_price_out_of_range"),
        (event(4, r#""quantity_delta":-9223372036854775808,"unit_price":"1.00""#), "quantity_out_of_range"),
        (event(5, r#""quantity_delta":-99999999999999999999,"unit_price":"1.00""#), "invalid_type"),
        // A store_id of 600 KB: in an output key and value both, over the client's 1 MB.
        (
            String::from_utf8_lossy(&event(6, r#""quantity_delta":-1,"unit_price":"1.00""#))
                .replace("EUC-M01", &"S".repeat(600_000))
                .into_bytes(),
            "id_too_long",
        ),
    ];
    for (payload, _) in &poison {
        pipeline.produce_raw("sales", "EUC-M01", payload);
    }
    pipeline.produce_events(17, 2_000);
    let mut processor = pipeline.start("poison-0");
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    terminate(&mut processor);
    let dead = pipeline.read_topic("dead-letter");
    let poisoned: Vec<&support::Record> = dead
        .iter()
        .filter(|r| r.headers.get("stockpulse.source").is_some_and(|s| s.starts_with("poison.sales/")))
        .collect();
    let huge_record = dead
        .iter()
        .find(|r| r.headers.contains_key("stockpulse.truncated"))
        .expect("the 5 MB line is dead-lettered, cut to fit a Kafka record");
    let huge_size = poison.iter().find(|(_, e)| *e == "5 MB").map(|(p, _)| p.len()).unwrap_or_default();
    assert_eq!(huge_record.headers["stockpulse.original_size"], huge_size.to_string());
    assert_eq!(huge_record.headers["stockpulse.reason_code"], "event_too_large");
    for (payload, expected) in &poison {
        if *expected == "5 MB" {
            continue;
        }
        let found = dead.iter().find(|r| r.value.as_deref() == Some(payload.as_slice()));
        let code = found.and_then(|r| r.headers.get("stockpulse.reason_code")).map(String::as_str);
        assert!(code.is_some_and(|c| c.starts_with(expected)), "{:?}: {code:?}", String::from_utf8_lossy(payload));
    }
    assert!(poisoned.len() >= poison.len(), "{} dead letters from the sales topic", poisoned.len());
    // Everything after the poison was processed: the figures equal replay's.
    assert_same_inventory(&from_kafka(&pipeline), &from_replay(&pipeline));
}

#[test]
fn dead_letters_fit_a_topic_whose_record_limit_is_small() {
    // A dead-letter topic that takes records of 20,000 bytes at most (Kafka's limit is on a
    // whole batch, compressed): a 200 KB line is cut to fit, and a run of garbage lines,
    // batched, is not refused either. Random bytes, which no codec makes smaller.
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "small-dlq", 2);
    const LIMIT: usize = 20_000;
    pipeline.set_record_limit("dead-letter", LIMIT);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let large = random(200 * 1024);
    pipeline.produce_raw("sales", "EUC-M01", &large);
    let garbage: Vec<Vec<u8>> = (0..300).map(|_| random(300)).collect();
    for line in &garbage {
        pipeline.produce_raw("sales", "EUC-M01", line);
    }
    // An event_id of 300 KB that is not a UUID: the reason, a header, quotes it.
    let id: String = random(300 * 1024).iter().map(|b| char::from(b'a' + b % 26)).collect();
    let bad_id = format!(
        r#"{{"event_id":"{id}","event_type":"SALE","event_time":"2026-11-27T10:00:00Z","store_id":"EUC-M01","sku_id":"SKU-000001","quantity_delta":-1,"unit_price":"1.00","currency":"EUR"}}"#
    );
    pipeline.produce_raw("sales", "EUC-M01", bad_id.as_bytes());
    pipeline.produce_events(29, 2_000);
    pipeline.run_to_the_end("small-dlq-0");
    let dead = pipeline.read_topic("dead-letter");
    let cut = dead
        .iter()
        .find(|r| r.headers.contains_key("stockpulse.truncated"))
        .expect("the 200 KB line is dead-lettered, cut to fit the topic");
    assert_eq!(cut.headers["stockpulse.original_size"], large.len().to_string());
    let size = |r: &support::Record| {
        let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        r.key.as_ref().map_or(0, String::len) + r.value.as_ref().map_or(0, Vec::len) + headers
    };
    assert!(size(cut) < LIMIT, "{} bytes", size(cut));
    for line in &garbage {
        assert!(dead.iter().any(|r| r.value.as_deref() == Some(line.as_slice())), "{}", String::from_utf8_lossy(line));
    }
    let quoted = dead
        .iter()
        .find(|r| r.headers.get("stockpulse.reason_code").is_some_and(|c| c == "invalid_event_id"))
        .expect("the event with a 300 KB event_id is dead-lettered");
    assert!(quoted.headers["stockpulse.reason"].len() <= 1024, "the reason is cut to 1 KB");
    assert!(size(quoted) < LIMIT, "{} bytes", size(quoted));
    assert_same_inventory(&from_kafka(&pipeline), &from_replay(&pipeline));

    // The limit lowered while an instance runs: the refused record fails its transaction, the
    // instance exits naming the topic, and the restart reads the new limit and goes on.
    let mut processor = pipeline.start("small-dlq-0");
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    const LOWER: usize = 5_000;
    pipeline.set_record_limit("dead-letter", LOWER);
    let line = random(12_000);
    pipeline.produce_raw("sales", "EUC-M01", &line);
    let status = processor.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    let log = std::fs::read_to_string(&processor.log).unwrap_or_default();
    assert!(log.contains("topic small-dlq.dead-letter refused a record as larger than its max.message.bytes"), "{log}");
    pipeline.run_to_the_end("small-dlq-0");
    let dead = pipeline.read_topic("dead-letter");
    let cut: Vec<&support::Record> =
        dead.iter().filter(|r| r.headers.get("stockpulse.original_size") == Some(&line.len().to_string())).collect();
    assert_eq!(cut.len(), 1, "the 12 KB line is dead-lettered once, cut to fit the lowered limit");
    assert!(size(cut[0]) < LOWER, "{} bytes", size(cut[0]));
    assert!(line.starts_with(cut[0].value.as_deref().unwrap_or_default()));
    // The refused transaction's work was redone once: the figures are still replay's.
    assert_same_inventory(&from_kafka(&pipeline), &from_replay(&pipeline));
}

#[test]
fn a_restart_with_more_input_goes_on_from_the_committed_state() {
    // Stop after the first events, produce more, start again: the new instance restores every
    // task and continues, and the figures are those of one replay of everything.
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "two-phase", 2);
    pipeline.produce_events(29, 6_000);
    pipeline.run_to_the_end("two-phase-0");
    pipeline.produce_events(31, 3_000);
    pipeline.run_to_the_end("two-phase-0");
    let kafka_figures = from_kafka(&pipeline);
    assert!(!kafka_figures.late.is_empty(), "the second events' time range is behind the first sentinels");
    assert_same(&kafka_figures, &from_replay(&pipeline));
}

/// An instance that died in the middle of a commit, under a name that never comes back (a
/// rescheduled pod), leaves its transaction open on changelog partitions until the broker
/// aborts it; `read_committed` readers see nothing of those partitions past its start. Another
/// instance takes over and commits more work behind it; a third restores the tasks while the
/// transaction is still open. It must wait for the committed state: restoring what is visible
/// would give the first instance's state with the second's offsets, and lose the second's work.
#[test]
fn a_restore_behind_a_dead_instances_open_transaction_waits_for_the_committed_state() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "zombie", 2);
    pipeline.produce_events(51, 3_000);
    pipeline.run_to_the_end("zombie-a");
    // The dead instance: its transaction on both changelog partitions stays open for 40 s.
    let zombie: BaseProducer = support::client(&kafka.bootstrap)
        .set("transactional.id", "zombie-dead-pod")
        .set("transaction.timeout.ms", "40000")
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    for partition in 0..2 {
        let record = BaseRecord::to("zombie.changelog").partition(partition).key("[\"meta\"]").payload("{}");
        zombie.send(record).map_err(|(e, _)| e).unwrap();
    }
    zombie.flush(Duration::from_secs(30)).unwrap();
    let opened = Instant::now();
    pipeline.produce_events(53, 2_000);
    pipeline.run_to_the_end("zombie-b");
    pipeline.produce_events(57, 2_000);
    let mut third = pipeline.start("zombie-c");
    third.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut third]);
    let log = std::fs::read_to_string(&third.log).unwrap_or_default();
    let (status, _) = terminate(&mut third);
    assert!(status.success());
    assert_same_inventory(&from_kafka(&pipeline), &from_replay(&pipeline));
    assert!(opened.elapsed() > Duration::from_secs(40), "the broker has aborted the transaction by now");
    assert!(log.contains("waiting until the broker ends it"), "the third instance restored behind it:\n{log}");
}

/// A till offline for three hours while its store trades on: its buffered sales, each with the
/// till's sequence number, come in after the store's later traffic, and every one is sent two
/// or three times (retries). Inventory applies each sale once: the SKU only that till sold ends
/// at minus the sum of its distinct sales, on Kafka and in replay. (With event ids alone, a sale
/// more than `dedupe.horizon`, 1 hour, older than its store's newest event could not be checked,
/// and was refused.) The windows past their lateness get the sales on the late output.
#[test]
fn a_till_offline_for_three_hours_uploads_its_buffer_with_retries_and_every_sale_counts_once() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "offline", 2);
    let last = pipeline.produce_traffic(61, 4_000);
    let mut sold = 0;
    let mut buffer = Vec::new();
    for sequence in 1..=120i64 {
        let units = 1 + sequence % 3;
        sold += units;
        let at = chrono::DateTime::from_timestamp_millis(last - 3 * 3_600_000 + sequence * 60_000).unwrap();
        buffer.push(
            serde_json::json!({
                "event_id": format!("00000000-0000-4000-9000-{sequence:012}"), "event_type": "SALE",
                "event_time": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "store_id": "EUC-M01", "sku_id": "OFFLINE-1", "quantity_delta": -units,
                "unit_price": "10.00", "currency": "EUR", "terminal_id": "EUC-M01-T9", "sequence": sequence,
                "schema_version": 1
            })
            .to_string(),
        );
    }
    for round in 0..3 {
        for (n, sale) in buffer.iter().enumerate() {
            if round < 2 || n % 3 == 0 {
                pipeline.produce_recorded("sales", "EUC-M01", sale.as_bytes());
            }
        }
    }
    pipeline.produce_sentinels(last + 2 * 3_600_000);
    pipeline.run_to_the_end("offline-0");
    let (kafka_figures, replay) = (from_kafka(&pipeline), from_replay(&pipeline));
    for (name, figures) in [("kafka", &kafka_figures), ("replay", &replay)] {
        let position = &figures.inventory["EUC-M01|OFFLINE-1"];
        assert_eq!(position["on_hand"], -sold, "{name}: {position}");
        let late = buffer.iter().filter(|sale| figures.late.iter().any(|id| sale.contains(id.as_str()))).count();
        assert_eq!(late, 120, "{name}: every sale is late for its windows");
    }
    assert_same(&kafka_figures, &replay);
}

/// An output topic deleted while the instance writes to it: every transaction would fail on
/// it, and aborting, restoring and redoing the work would fail the same way forever. The
/// instance exits non-zero naming the topic (the pod restarts, and its start refuses a missing
/// topic by name until the operator has created it again); nothing past the last commit is
/// committed.
#[test]
fn an_output_topic_deleted_mid_run_ends_the_run_naming_it() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "deleted", 2);
    pipeline.produce_events(59, 100_000);
    let mut processor = pipeline.start("deleted-0");
    let address = processor.address(Duration::from_secs(30));
    while metric(&address, "stockpulse_processor_outputs_total") < 5_000 {
        processor.assert_running();
        std::thread::sleep(Duration::from_millis(50));
    }
    pipeline.delete_topic("inventory-state");
    let started = Instant::now();
    let status = processor.wait_exit(Duration::from_secs(150));
    let log = std::fs::read_to_string(&processor.log).unwrap_or_default();
    let aborts = log.matches("aborting it and restoring every task").count();
    eprintln!("exited {status} after {:?}, {aborts} transactions aborted before", started.elapsed());
    assert!(!status.success(), "{}", processor.log_tail());
    assert_eq!(aborts, 0, "no abort-and-redo loop on a topic that is gone");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("topic deleted.inventory-state does not exist any more"), "{last}");
    // The restart refuses to start without it, naming it.
    let mut again = pipeline.start("deleted-1");
    let status = again.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&again.log).unwrap_or_default();
    let last = log.lines().last().unwrap_or_default();
    assert!(!status.success() && last.contains("deleted.inventory-state"), "{status}: {last}");
}

/// A rollout from a version that did not read the repartition topic: an old member subscribes
/// to sales and inventory only, so the range assignor gives it some of their partitions and
/// this instance every repartition partition. The task whose sales and inventory partitions
/// went to the old member is split: this instance must neither process nor commit it (two
/// instances would own one task). It waits until the old member is gone; then the figures
/// equal replay's.
#[test]
fn a_task_split_between_members_that_disagree_on_the_topics_waits_until_it_comes_whole() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "split", 2);
    pipeline.produce_events(67, 5_000);
    let old: BaseConsumer = support::client(&kafka.bootstrap)
        .set("group.id", "split")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    old.subscribe(&["split.sales", "split.inventory"]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let old_member = {
        let stop = stop.clone();
        // Polls (so that it takes part in rebalances) and reads nothing it commits.
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let _ = old.poll(Duration::from_millis(100));
            }
            old.unsubscribe();
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let mut processor = pipeline.start("split-new");
    let address = processor.address(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&processor.log).unwrap_or_default().contains("is split between instances") {
        processor.assert_running();
        assert!(Instant::now() < deadline, "no split task:\n{}", processor.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(&address, "stockpulse_processor_tasks "), 1, "only the whole task runs");
    let (done, total) = pipeline.committed_progress();
    assert!(done < total, "the split task's input is not committed: {done} of {total}");
    stop.store(true, Ordering::SeqCst);
    old_member.join().unwrap();
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    assert_eq!(metric(&address, "stockpulse_processor_tasks "), 2);
    terminate(&mut processor);
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

fn assert_same_inventory(kafka: &Figures, replay: &Figures) {
    assert!(replay.inventory.len() > 100);
    assert_eq!(kafka.inventory, replay.inventory);
    assert_eq!(kafka.aggregates, replay.aggregates);
}

#[test]
fn at_least_once_mode_gives_the_same_last_values() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create_with(&kafka.bootstrap, "alo", 2, false);
    pipeline.produce_events(23, 5_000);
    pipeline.run_to_the_end("alo-0");
    // Without a crash nothing is repeated, so even the dead letters and late events match.
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

/// While a commit is in flight the loop goes on processing, and holds the outputs for the next
/// transaction. A transaction coordinator that stays slow while input flows must not grow the
/// instance's memory without end: past `--max-held-output-bytes` every input pauses until the
/// commit ends. A backlog with a small budget: the budget is reached, no commit ends with more
/// than the budget and one record's outputs held, and the figures are replay's.
#[test]
fn outputs_held_while_a_commit_is_in_flight_stay_within_the_budget() {
    const BUDGET: u64 = 65_536;
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "held", 2);
    pipeline.produce_events(89, 20_000);
    let mut processor = pipeline.start_with("held-0", &["--max-held-output-bytes", &BUDGET.to_string()]);
    let address = processor.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(240), &mut [&mut processor]);
    let holds = metric(&address, "stockpulse_processor_input_holds_total");
    let (_, metrics) = http_get(&address, "/metrics");
    let held: Vec<&str> = metrics.lines().filter(|l| l.starts_with("stockpulse_processor_held_output_bytes")).collect();
    eprintln!("{holds} input holds; held outputs at commit ends:\n{}", held.join("\n"));
    assert!(holds > 0, "the backlog reached the budget");
    let commits = metric(&address, "stockpulse_processor_held_output_bytes_count");
    let within = metric(&address, "stockpulse_processor_held_output_bytes_bucket{le=\"262144.0\"}");
    assert_eq!(
        within, commits,
        "every commit ended with at most 256 KiB held (a budget of {BUDGET} and one record's outputs)"
    );
    let (status, _) = processor.terminate(Duration::from_secs(20));
    assert!(status.success());
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

/// Partitions added to the input topics of a running pipeline (the operator does it when the
/// spec's `partitions` grows) move stores to other tasks, and their state (inventory, open
/// windows, dedupe) does not follow: before, the instance went on, and computed wrong figures
/// for every store that moved. It now stops within its 30-s check, naming both counts and the
/// way out; a restart refuses the same way (its restore finds state built for the old count).
#[test]
fn partitions_added_to_a_running_pipeline_stop_it_with_the_reason() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "grown", 2);
    pipeline.produce_events(97, 3_000);
    let mut processor = pipeline.start("grown-0");
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    pipeline.add_partitions(&["sales", "inventory", "repartition", "changelog"], 3);
    let reason = "the input topics have 3 partitions, and the state in the changelog was built for 2";
    let status = processor.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&processor.log).unwrap_or_default();
    assert!(!status.success() && log.contains(reason), "{status}:\n{}", processor.log_tail());
    let mut restarted = pipeline.start("grown-0");
    let status = restarted.wait_exit(Duration::from_secs(60));
    let log = std::fs::read_to_string(&restarted.log).unwrap_or_default();
    assert!(!status.success() && log.contains(reason), "{status}:\n{}", restarted.log_tail());
}

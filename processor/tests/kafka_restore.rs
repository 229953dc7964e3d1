//! Restores on a real Apache Kafka broker: a task's changelog is read back on the processing
//! loop, never inside a rebalance callback, so a long restore holds up neither the probes nor
//! the instance's other tasks; a task that comes back to an instance after another instance
//! held it is restored, not resumed as it was left.

mod support;

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use stockpulse_testkit::kafka::Kafka;
use support::figures::{assert_same, from_kafka, from_replay};
use support::{Pipeline, http_get};

/// A transaction of a "dead instance" (a producer of its own transactional id) left open on
/// the given changelog partitions for `timeout`: `read_committed` readers see nothing of those
/// partitions past its start until the broker aborts it.
fn open_transaction(bootstrap: &str, topic: &str, partitions: &[i32], timeout: Duration) -> BaseProducer {
    let zombie: BaseProducer = support::client(bootstrap)
        .set("transactional.id", format!("{topic}-dead-pod"))
        .set("transaction.timeout.ms", timeout.as_millis().to_string())
        .create()
        .unwrap();
    zombie.init_transactions(Duration::from_secs(30)).unwrap();
    zombie.begin_transaction().unwrap();
    for &partition in partitions {
        let record = BaseRecord::to(topic).partition(partition).key("[\"meta\"]").payload("{}");
        zombie.send(record).map_err(|(e, _)| e).unwrap();
    }
    zombie.flush(Duration::from_secs(30)).unwrap();
    zombie
}

/// How long ago the instance's processing loop last turned, from `/healthz`.
fn loop_turned_ago(address: &str) -> Duration {
    let (status, body) = http_get(address, "/healthz");
    assert_eq!(status, 200, "/healthz: {body}");
    let millis = body
        .split("turned ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("/healthz says how long ago the loop turned: {body}"));
    Duration::from_millis(millis)
}

/// Task 0's restore waits behind a dead instance's open transaction (half a minute here; with
/// ten million changelog records, minutes) while task 1's restore is quick. Inside the
/// rebalance callback the wait held up the whole instance: the loop stood still (a liveness
/// probe with a short period kills the pod, and the next one restores again, forever) and task
/// 1 processed nothing until task 0 was ready. On the loop, task 1 catches up while task 0 is
/// still restoring, and the loop turns all along. The read API answers a question about task 0
/// with 503 `restoring` (before, the group already named this instance as the owner, and the
/// instance redirected the client to itself).
#[test]
fn a_long_restore_holds_up_neither_the_loop_nor_the_other_task() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "slow-restore", 2);
    pipeline.produce_events(71, 6_000);
    pipeline.run_to_the_end("slow-restore-a");
    let _zombie = open_transaction(&kafka.bootstrap, "slow-restore.changelog", &[0], Duration::from_secs(25));
    let opened = Instant::now();
    // A second instance commits behind the open transaction: a restore must now wait for it.
    pipeline.produce_events(73, 2_000);
    pipeline.run_to_the_end("slow-restore-b");
    pipeline.produce_events(79, 2_000);
    let mut third = pipeline.start("slow-restore-c");
    let address = third.address(Duration::from_secs(30));
    let (mut slowest_turn, mut restoring_seen, mut other_task_done) = (Duration::ZERO, false, false);
    let question = format!("/v1/inventory/{}/SENTINEL", support::sentinel_store(0, 2));
    let mut answers = std::collections::BTreeSet::new();
    loop {
        third.assert_running();
        slowest_turn = slowest_turn.max(loop_turned_ago(&address));
        // Asked before /readyz: an answer recorded was given while the task was not ready.
        let answer = support::http_request(&address, &question);
        let (ready, reason) = http_get(&address, "/readyz");
        if ready == 200 {
            break;
        }
        if reason.contains("1 task(s) restoring") {
            restoring_seen = true;
            other_task_done |= pipeline.task_caught_up(1);
            let code = serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v["error"].as_str().map(String::from));
            if answer.status == 503 {
                assert_eq!(answer.headers.get("retry-after").map(String::as_str), Some("1"), "{}", answer.body);
            }
            answers.insert((answer.status, code.unwrap_or_default()));
        }
        assert!(
            opened.elapsed() < Duration::from_secs(120),
            "not ready within 120 s of the transaction opening: {reason}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "ready {:?} after the transaction opened; the loop's slowest turn seen: {slowest_turn:?}",
        opened.elapsed()
    );
    assert!(restoring_seen, "task 0 restored behind the open transaction:\n{}", third.log_tail());
    assert!(other_task_done, "task 1 caught up while task 0 was still restoring");
    assert!(slowest_turn < Duration::from_secs(2), "the loop stood still for {slowest_turn:?} during the restore");
    // Until the group's description names this instance: no owner; then: restoring here.
    assert!(answers.contains(&(503, "restoring".to_string())), "read API during the restore: {answers:?}");
    assert!(
        answers.iter().all(|(status, code)| *status == 503 && ["restoring", "no_owner"].contains(&code.as_str())),
        "{answers:?}"
    );
    let (status, body) = http_get(&address, &question);
    assert_eq!(status, 200, "task 0 answers once restored: {body}");
    pipeline.wait_caught_up(Duration::from_secs(120), &mut [&mut third]);
    let (status, _) = third.terminate(Duration::from_secs(20));
    assert!(status.success());
    assert_same(&from_kafka(&pipeline), &from_replay(&pipeline));
}

/// The last changelog record of an inventory position: its key, value and headers.
fn last_position_entry(bootstrap: &str, topic: &str) -> (String, serde_json::Value, Vec<(String, Vec<u8>)>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = support::client(bootstrap)
        .set("group.id", "come-back-reader")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut last = None;
    loop {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                if key.starts_with("[\"pos\"") && m.payload().is_some() {
                    let value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("a position's JSON");
                    let headers = m
                        .headers()
                        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                        .unwrap_or_default();
                    last = Some((key, value, headers));
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("{topic} not read to its end within 10 s"),
        }
    }
    last.expect("a position in the changelog")
}

/// A task goes from instance a to another and back, with its committed input offsets unchanged
/// all along, while the other instance committed a change to its state: one it made on its own
/// clock (an idle task following the pipeline's clock fires its windows and the alerts on them,
/// and commits them with the offsets it had), before it died ahead of its next commit.
///
/// Instance a is frozen (SIGSTOP) past its session timeout, so the group takes its task away
/// (an unresponsive node, a long pause); a transactional producer stands in for the other
/// instance's last transaction: a changed position on the changelog, with the offsets header
/// the task had. When a wakes it learns its partitions were lost, rejoins and gets the task
/// back. Resumed as a left it (the offsets are those a holds), its state would miss the
/// change, and a's next windows and webhooks would repeat what the other instance sent; the
/// changelog holds a record past the end a saw when it gave the task up, so a restores it.
#[test]
fn a_task_that_comes_back_after_another_instance_changed_it_is_restored_not_resumed() {
    use rdkafka::message::{Header, OwnedHeaders};
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "come-back", 1);
    pipeline.produce_events(83, 3_000);
    let mut a = pipeline.start("come-back-a");
    let address = a.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut a]);
    let (key, mut value, headers) = last_position_entry(&kafka.bootstrap, "come-back.changelog");
    let position: Vec<String> = serde_json::from_str(&key).unwrap();
    let path = format!("/v1/inventory/{}/{}", position[1], position[2]);
    let on_hand = |body: &str| serde_json::from_str::<serde_json::Value>(body).ok()?.get("on_hand")?.as_i64();
    let (status, body) = http_get(&address, &path);
    let held = on_hand(&body).unwrap_or_else(|| panic!("{path}: {status} {body}"));
    assert_eq!(value.get("on_hand").and_then(serde_json::Value::as_i64), Some(held), "{key}: {value}");

    a.signal("STOP");
    std::thread::sleep(Duration::from_secs(14)); // the session timeout is 10 s
    value["on_hand"] = serde_json::json!(held + 1_000);
    let other: BaseProducer =
        support::client(&kafka.bootstrap).set("transactional.id", "come-back-other-instance").create().unwrap();
    other.init_transactions(Duration::from_secs(30)).unwrap();
    other.begin_transaction().unwrap();
    let mut record_headers = OwnedHeaders::new();
    for (name, bytes) in &headers {
        record_headers = record_headers.insert(Header { key: name, value: Some(bytes) });
    }
    let payload = value.to_string();
    let record = BaseRecord::to("come-back.changelog").partition(0).key(&key).payload(&payload).headers(record_headers);
    other.send(record).map_err(|(e, _)| e).unwrap();
    other.commit_transaction(Duration::from_secs(30)).unwrap();
    a.signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        a.assert_running();
        let (status, body) = http_get(&address, &path);
        if status == 200 && on_hand(&body) == Some(held + 1_000) {
            break;
        }
        assert!(Instant::now() < deadline, "{path} after the task came back: {status} {body}\n{}", a.log_tail());
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(log.contains("the task changed on another instance"), "{}", a.log_tail());
    let (status, _) = a.terminate(Duration::from_secs(20));
    assert!(status.success());
}

//! Alert sinks on Apache Kafka: a Slack-compatible webhook that fails its first attempts and
//! answers slowly gets every alert once, while event processing goes on at its own pace; a
//! webhook that refuses (404) sends its alerts to the dead-letter topic with the reason; a
//! policy's own Kafka topic gets its alerts. Needs the test tools (Apache Kafka), like
//! kafka_run.rs.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;
use stockpulse_testkit::kafka::Kafka;
use support::{Pipeline, client, http_get, replay_lines};

/// What the webhook server saw: attempts and successful deliveries per alert id.
#[derive(Default)]
struct Seen {
    attempts: BTreeMap<String, u32>,
    delivered: BTreeMap<String, u32>,
}

/// A local webhook endpoint: `/flaky` answers 503 to the first two attempts of each alert
/// and 200 to the next, every answer after `delay`; `/gone` answers 404.
fn webhook_server(delay: Duration) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route(
            "/{kind}",
            post(move |State(seen): State<Arc<Mutex<Seen>>>, Path(kind): Path<String>, body: String| async move {
                tokio::time::sleep(delay).await;
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let id = body["attachments"][0]["fields"]
                    .as_array()
                    .and_then(|f| f.iter().find(|f| f["title"] == "alert id"))
                    .and_then(|f| f["value"].as_str())
                    .unwrap_or("no id")
                    .to_string();
                if kind == "gone" {
                    return StatusCode::NOT_FOUND;
                }
                let mut seen = seen.lock().unwrap();
                let attempts = seen.attempts.entry(id.clone()).or_insert(0);
                *attempts += 1;
                if *attempts <= 2 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                *seen.delivered.entry(id).or_insert(0) += 1;
                StatusCode::OK
            }),
        )
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (address, seen)
}

fn create_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for result in runtime.block_on(admin.create_topics([&topic], &AdminOptions::new())).unwrap() {
        result.unwrap();
    }
}

#[test]
fn webhooks_get_every_alert_once_without_holding_up_processing() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "hook", 2);
    let (address, seen) = webhook_server(Duration::from_millis(400));
    let dir = pipeline.dir.path().to_path_buf();
    std::fs::write(dir.join("flaky-url"), format!("http://{address}/flaky\n")).unwrap();
    std::fs::write(dir.join("gone-url"), format!("http://{address}/gone")).unwrap();
    create_topic(&kafka.bootstrap, "hook.merchandising-alerts");
    let config = std::fs::read_to_string(&pipeline.config).unwrap();
    let config = format!(
        "{}alerts:\n\
         \x20 - {{name: low-stock, lowStock: {{threshold: 3}}, cooldown: 1h, sinks: [{{type: webhook, urlFile: {flaky}}}]}}\n\
         \x20 - {{name: big, amountOutlier: {{sigma: 4, minSamples: 50}}, cooldown: 10m, sinks: [{{type: webhook, urlFile: {gone}}}, {{type: kafka, topic: hook.merchandising-alerts}}]}}\n",
        &config[..config.find("alerts:").unwrap()],
        flaky = dir.join("flaky-url").display(),
        gone = dir.join("gone-url").display(),
    );
    std::fs::write(&pipeline.config, config).unwrap();
    pipeline.produce_events(41, 20_000);

    let replay = pipeline.replay();
    let alert_ids = |policy: &str| -> Vec<String> {
        let mut ids: Vec<String> = replay_lines(&replay, "alerts.ndjson")
            .iter()
            .filter(|a| a["policy"] == policy)
            .map(|a| a["alert_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let (low, big) = (alert_ids("low-stock"), alert_ids("big"));
    assert!(low.len() >= 50 && !big.is_empty(), "{} low-stock and {} outlier alerts", low.len(), big.len());

    let started = Instant::now();
    let mut processor = pipeline.start_with("hook-0", &["--webhook-backoff", "100ms", "--webhook-attempts", "5"]);
    let metrics_address = processor.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
    let processed_in = started.elapsed();
    let delivered_then = seen.lock().unwrap().delivered.len();
    eprintln!(
        "{} low-stock and {} outlier alerts; every event processed and committed after {processed_in:?}, \
         when {delivered_then} low-stock alerts had been delivered",
        low.len(),
        big.len()
    );
    // Each delivery takes three slow attempts: the webhooks are far behind when every event
    // has been processed and committed, and processing did not wait for them.
    assert!(
        delivered_then < low.len(),
        "processing caught up in {processed_in:?} only after all {delivered_then} deliveries"
    );

    let deadline = Instant::now() + Duration::from_secs(240);
    while seen.lock().unwrap().delivered.len() < low.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    {
        let seen = seen.lock().unwrap();
        let delivered: Vec<String> = seen.delivered.keys().cloned().collect();
        assert_eq!(delivered, low, "every low-stock alert delivered, nothing else");
        assert!(seen.delivered.values().all(|n| *n == 1), "none delivered twice");
        assert!(
            seen.attempts.iter().filter(|(id, _)| low.contains(id)).all(|(_, n)| *n == 3),
            "two refusals, then 200"
        );
    }
    // The refusing webhook: its alerts go to the dead-letter topic with the reason.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut dead: Vec<String>;
    loop {
        dead = pipeline
            .read_topic("dead-letter")
            .into_iter()
            .filter(|r| r.headers.get("stockpulse.reason_code").map(String::as_str) == Some("alert_webhook_failed"))
            .map(|r| {
                let reason = &r.headers["stockpulse.reason"];
                assert!(reason.starts_with("alert_webhook_failed: policy big: answered 404"), "{reason}");
                r.key.unwrap()
            })
            .collect();
        dead.sort();
        if dead.len() >= big.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(dead, big, "every outlier alert dead-lettered once");
    // The policy's own Kafka topic holds its alerts.
    let mut merch: Vec<String> = support::read_committed(&kafka.bootstrap, "hook.merchandising-alerts")
        .into_iter()
        .map(|r| r.key.unwrap())
        .collect();
    merch.sort();
    assert_eq!(merch, big);

    let (_, metrics) = http_get(&metrics_address, "/metrics");
    let line = format!(
        "stockpulse_processor_webhook_deliveries_total{{policy=\"low-stock\",outcome=\"delivered\"}} {}",
        low.len()
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    let line = format!("stockpulse_processor_alerts_total{{policy=\"big\",rule=\"amountOutlier\"}} {}", big.len());
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    eprintln!("every low-stock alert delivered {:?} after the start", started.elapsed());
    let (status, _) = processor.terminate(Duration::from_secs(20));
    assert!(status.success());
}

//! The read API of `stockpulse-processor run` on a real Apache Kafka broker, two instances:
//! positions, a store's low stock and top SKUs equal what `replay` computes from the same
//! events; a key asked of the instance that does not hold it is redirected to the one that
//! does; every response matches docs/openapi.yaml.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use stockpulse_processor::generator::brand::stores;
use stockpulse_testkit::kafka::Kafka;
use support::{HttpResponse, Pipeline, http_request, replay_lines};

/// The OpenAPI document's schemas, as validators of response bodies.
struct Contract {
    document: Value,
}

impl Contract {
    fn load() -> Contract {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
        Contract { document: serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML") }
    }

    /// Checks a response against the schema the document gives its path and status.
    fn check(&self, path_template: &str, response: &HttpResponse) -> Value {
        let operation = &self.document["paths"][path_template]["get"];
        assert!(operation.is_object(), "docs/openapi.yaml has no GET {path_template}");
        let declared = &operation["responses"][response.status.to_string()];
        assert!(
            declared.is_object(),
            "GET {path_template} answered {} which docs/openapi.yaml does not declare: {}",
            response.status,
            response.body
        );
        assert_eq!(response.headers.get("content-type").map(String::as_str), Some("application/json"));
        let body: Value = serde_json::from_str(&response.body).expect("a JSON body");
        let mut schema = declared["content"]["application/json"]["schema"].clone();
        // References resolve against the document's components.
        schema["components"] = self.document["components"].clone();
        let validator = jsonschema::validator_for(&schema).expect("a valid schema");
        let problems: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(problems.is_empty(), "GET {path_template} {}: {problems:?}\n{body}", response.status);
        body
    }
}

/// GETs `path` from `first`; a 307 is followed once, to the owner it names.
fn get_following(contract: &Contract, template: &str, first: &str, path: &str) -> (Value, bool) {
    let response = http_request(first, path);
    let body = contract.check(template, &response);
    if response.status != 307 {
        return (body, false);
    }
    let location = response.headers.get("location").expect("a redirect names the owner");
    let owner = location.trim_start_matches("http://").split('/').next().unwrap().to_string();
    assert_eq!(body["owner"], owner.as_str());
    assert_eq!(location, &format!("http://{owner}{path}"));
    let response = http_request(&owner, path);
    assert_eq!(response.status / 100, 2, "the owner answers itself: {}", response.body);
    (contract.check(template, &response), true)
}

#[test]
fn the_read_api_answers_from_live_state_as_replay_computes_it() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let contract = Contract::load();
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "read", 4);
    // No closing sentinels: the latest windows stay held (within their lateness).
    pipeline.produce_traffic(33, 12_000);
    let mut a = pipeline.start("read-a");
    let mut b = pipeline.start("read-b");
    let addresses = [a.address(Duration::from_secs(30)), b.address(Duration::from_secs(30))];
    pipeline.wait_caught_up(Duration::from_secs(180), &mut [&mut a, &mut b]);
    for address in &addresses {
        support::wait_ready(address, Duration::from_secs(60));
    }

    let out = pipeline.replay();
    let inventory: BTreeMap<(String, String), Value> = replay_lines(&out, "inventory.ndjson")
        .into_iter()
        .map(|v| ((v["store_id"].as_str().unwrap().to_string(), v["sku_id"].as_str().unwrap().to_string()), v))
        .collect();
    assert!(inventory.len() > 1_000, "{} positions", inventory.len());

    // Positions: every 37th, asked of the first instance; some are redirected.
    let template = "/v1/inventory/{store}/{sku}";
    let mut redirected = BTreeSet::new();
    for ((store, sku), expected) in inventory.iter().step_by(37) {
        let (body, moved) = get_following(&contract, template, &addresses[0], &format!("/v1/inventory/{store}/{sku}"));
        assert_eq!(&body, expected, "{store}/{sku}");
        redirected.insert(moved);
    }
    assert_eq!(redirected.len(), 2, "some keys are held here, some on the other instance");
    let missing = http_request(&addresses[1], "/v1/inventory/NO-SUCH-STORE/NO-SKU");
    let body = contract.check(template, &missing);
    if missing.status != 307 {
        assert_eq!((missing.status, body["error"].as_str()), (404, Some("not_found")));
    }

    // Low stock of every store (threshold 3, the pipeline's lowStock rule, by default).
    let template = "/v1/stores/{store}/low-stock";
    let mut any_low = false;
    for store in stores().iter().map(|s| s.store_id.clone()) {
        let expected: Vec<&Value> = inventory
            .iter()
            .filter(|((s, _), v)| *s == store && v["available"].as_i64().unwrap() <= 3)
            .map(|(_, v)| v)
            .collect();
        any_low |= !expected.is_empty();
        let (body, _) = get_following(&contract, template, &addresses[1], &format!("/v1/stores/{store}/low-stock"));
        assert_eq!(body["threshold"], 3);
        let got: Vec<&Value> = body["positions"].as_array().unwrap().iter().collect();
        assert_eq!(got, expected, "low stock of {store}");
    }
    assert!(any_low, "the traffic leaves some positions low");
    let bad = http_request(&addresses[0], "/v1/stores/X/low-stock?threshold=many");
    assert_eq!(bad.status, 400);
    assert!(contract.check(template, &bad)["message"].as_str().unwrap().starts_with("threshold:"));

    // Top SKUs of a region in the latest window complete on every task, from either instance.
    let template = "/v1/top-skus";
    let region_of: BTreeMap<String, String> = stores().into_iter().map(|s| (s.store_id, s.region)).collect();
    let region = region_of.values().next().unwrap().clone();
    let path = format!("/v1/top-skus?window=sales-5m&region={region}&limit=5");
    let answers: Vec<Value> = addresses
        .iter()
        .map(|address| {
            let response = http_request(address, &path);
            assert_eq!(response.status, 200, "{}", response.body);
            contract.check(template, &response)
        })
        .collect();
    assert_eq!(answers[0], answers[1], "every instance gives the same answer");
    let start = answers[0]["window_start"].as_str().unwrap();
    let mut expected: BTreeMap<String, (i64, Decimal)> = BTreeMap::new();
    for v in replay_lines(&out, "aggregates.ndjson") {
        let store = v["store_id"].as_str().unwrap_or_default();
        if v["window"] == "sales-5m" && v["window_start"] == start && region_of.get(store) == Some(&region) {
            let entry = expected.entry(v["sku_id"].as_str().unwrap().to_string()).or_default();
            entry.0 += v["units_sold"].as_i64().unwrap();
            entry.1 += v["net_revenue"].as_str().unwrap().parse::<Decimal>().unwrap();
        }
    }
    let mut ranked: Vec<(String, i64, Decimal)> = expected.into_iter().map(|(k, (u, r))| (k, u, r)).collect();
    ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    ranked.truncate(5);
    assert!(!ranked.is_empty(), "the window sold something in {region}");
    let got: Vec<(String, i64, Decimal)> = answers[0]["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["sku_id"].as_str().unwrap().to_string(),
                s["units_sold"].as_i64().unwrap(),
                s["net_revenue"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, ranked, "top SKUs of {region} in the window starting {start}");
    for (query, status) in
        [("window=nope", 400), ("window=region-channel-5m", 400), ("window=sales-5m&limit=0", 400), ("", 400)]
    {
        let response = http_request(&addresses[0], &format!("/v1/top-skus?{query}"));
        assert_eq!(response.status, status, "{query}: {}", response.body);
        contract.check(template, &response);
    }
    let local = http_request(&addresses[0], "/v1/top-skus?window=sales-5m&scope=local");
    assert_eq!(contract.check(template, &local)["partitions"].as_array().map(Vec::len), Some(2));
}

/// The read API answers positions as the last commit left them. A change processed and not
/// committed yet may still be rolled back by an abort (the broker away past the delivery
/// timeout, a fenced producer), and a reader must never be shown a value that then goes away.
/// With a commit every 5 s a restock is processed within milliseconds and committed seconds
/// later: the position read stays the committed one until the group's committed offset covers
/// the restock (read after each answer, so an answer given from committed state is covered).
#[test]
fn the_read_api_answers_positions_as_the_last_commit_left_them() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let mut pipeline = Pipeline::create(&kafka.bootstrap, "committed-reads", 1);
    let last = pipeline.produce_traffic(101, 2_000);
    pipeline.produce_sentinels(last + 2 * 3_600_000);
    let mut processor = pipeline.start_with("committed-reads-0", &["--commit-interval", "5s"]);
    let address = processor.address(Duration::from_secs(30));
    pipeline.wait_caught_up(Duration::from_secs(120), &mut [&mut processor]);
    let path = format!("/v1/inventory/{}/SENTINEL", support::sentinel_store(0, 1));
    let on_hand = || {
        let response = http_request(&address, &path);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        serde_json::from_str::<Value>(&response.body).unwrap()["on_hand"].as_i64().expect("on_hand")
    };
    let before = on_hand();
    let sales = "committed-reads.sales";
    let restock_offset = pipeline.input_ends()[&(sales.to_string(), 0)];
    pipeline.produce_restock(0, 7, last + 2 * 3_600_000 + 1_000);
    let group: BaseConsumer = support::client(&kafka.bootstrap).set("group.id", "committed-reads").create().unwrap();
    let committed = || {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(sales, 0);
        let offsets = group.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
        offsets.find_partition(sales, 0).and_then(|e| e.offset().to_raw()).unwrap_or(-1)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut reads = 0;
    loop {
        processor.assert_running();
        let value = on_hand();
        let covered = committed() > restock_offset;
        reads += 1;
        if value == before + 1 {
            assert!(covered, "the restock was answered before it was committed (read {reads})");
            break;
        }
        assert_eq!(value, before, "read {reads}");
        assert!(std::time::Instant::now() < deadline, "the restock was not answered within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reads > 5, "reads while the restock was processed and not committed: {reads}");
    let (status, _) = processor.terminate(Duration::from_secs(20));
    assert!(status.success());
}

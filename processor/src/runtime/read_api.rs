//! The read API over live state (docs/openapi.yaml):
//!
//! - `GET /v1/inventory/{store}/{sku}`: one position;
//! - `GET /v1/stores/{store}/low-stock?threshold=N`: a store's positions at or below N;
//! - `GET /v1/top-skus?window=W&region=R&limit=N&window_start=T`: the SKUs that sold most in
//!   the latest window complete on every task (or the one starting at T).
//!
//! A store's figures live in the task of its partition: an instance that does not hold it
//! answers `307` to the owner's address. Top SKUs span every task: the instance asks every
//! member for its tasks' figures (`scope=local`) and sums them.

// The helpers fail with the HTTP response to send, as axum handlers do; it is built once,
// on a path that ends the request.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::query::{Queries, cover};
use crate::engine::{QueryError, WindowHoldings, top_skus};
use crate::event::time::{Rfc3339Millis, parse_rfc3339_millis};
use crate::output::InventoryRecord;
use crate::partitioner::partition_of;

/// Set once the worker exists; until then the read API answers 503.
pub type ReadApi = Arc<OnceLock<Arc<Queries>>>;

/// Largest `limit` of top SKUs.
const MAX_LIMIT: usize = 1_000;
/// How long one instance may take to answer another.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes(api: ReadApi, default_threshold: i64) -> Router {
    Router::new()
        .route(
            "/v1/inventory/{store}/{sku}",
            get({
                let api = api.clone();
                move |Path((store, sku)): Path<(String, String)>, uri: Uri| async move {
                    inventory(api, store, sku, uri).await
                }
            }),
        )
        .route(
            "/v1/stores/{store}/low-stock",
            get({
                let api = api.clone();
                move |Path(store): Path<String>, RawQuery(query): RawQuery, uri: Uri| async move {
                    low_stock(api, store, query, uri, default_threshold).await
                }
            }),
        )
        .route("/v1/top-skus", get(move |RawQuery(query): RawQuery| async move { top(api, query).await }))
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(status, &json!({"error": code, "message": message.into()}))
}

/// A 503 that asks the client to come back in a second.
fn retry_later(code: &str, message: String) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn parameters(query: Option<String>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

fn queries(api: &ReadApi) -> Result<Arc<Queries>, Response> {
    api.get().cloned().ok_or_else(|| {
        error(StatusCode::SERVICE_UNAVAILABLE, "starting", "reference data and tasks are not loaded yet")
    })
}

/// Runs a blocking read (the worker's lock, the group coordinator) off the server's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Answers from task `partition` here, or sends the client to the instance that owns it.
async fn owned<T: Serialize + Send + 'static>(
    api: ReadApi,
    store: &str,
    uri: Uri,
    read: impl FnOnce(&crate::engine::Engine) -> Option<T> + Send + 'static,
    not_found: String,
) -> Response {
    let queries = match queries(&api) {
        Ok(q) => q,
        Err(response) => return response,
    };
    let partition = partition_of(store.as_bytes(), queries.partitions) as i32;
    let address = queries.address.clone();
    let here = {
        let queries = queries.clone();
        blocking(move || queries.with_task(partition, read)).await
    };
    match here {
        Err(response) => response,
        Ok(Some(Some(value))) => json_response(StatusCode::OK, &value),
        Ok(Some(None)) => error(StatusCode::NOT_FOUND, "not_found", not_found),
        Ok(None) => match blocking(move || queries.owner_of(partition)).await {
            Err(response) => response,
            Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "kafka", e),
            Ok(Ok(None)) => {
                retry_later("no_owner", format!("task {partition} has no owner at the moment (a rebalance); retry"))
            }
            // The group gave the task to this instance, which does not serve it yet: it is
            // reading the task's changelog back, or the assignment has not reached it.
            Ok(Ok(Some(owner))) if owner == address => retry_later(
                "restoring",
                format!("task {partition} is coming to this instance (its state is being restored); retry"),
            ),
            Ok(Ok(Some(owner))) => {
                let location = format!("http://{owner}{uri}");
                let mut response = json_response(
                    StatusCode::TEMPORARY_REDIRECT,
                    &json!({"error": "not_owner", "message": format!("task {partition} is on {owner}"), "owner": owner}),
                );
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
        },
    }
}

async fn inventory(api: ReadApi, store: String, sku: String, uri: Uri) -> Response {
    let message = format!("no position for store {store:?} and sku {sku:?}");
    let (s, k) = (store.clone(), sku);
    owned(api, &store, uri, move |engine| engine.position(&s, &k), message).await
}

#[derive(Serialize)]
struct LowStock {
    store_id: String,
    threshold: i64,
    positions: Vec<InventoryRecord>,
}

async fn low_stock(api: ReadApi, store: String, query: Option<String>, uri: Uri, default: i64) -> Response {
    let parameters = parameters(query);
    let threshold = match parameters.get("threshold").map(|t| t.parse::<i64>()) {
        None => default,
        Some(Ok(t)) => t,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_parameter", format!("threshold: {e}")),
    };
    let s = store.clone();
    owned(
        api,
        &store,
        uri,
        move |engine| Some(LowStock { positions: engine.low_stock(&s, threshold), store_id: s, threshold }),
        String::new(),
    )
    .await
}

/// What one instance says for `scope=local`: its tasks and their holdings.
#[derive(Debug, Serialize, Deserialize)]
pub struct LocalHoldings {
    pub partitions: Vec<i32>,
    pub holdings: Vec<WindowHoldings>,
}

async fn top(api: ReadApi, query: Option<String>) -> Response {
    let queries = match queries(&api) {
        Ok(q) => q,
        Err(response) => return response,
    };
    let parameters = parameters(query.clone());
    let Some(window) = parameters.get("window").cloned() else {
        return error(StatusCode::BAD_REQUEST, "bad_parameter", "window: required (a window grouped by sku)");
    };
    let region = parameters.get("region").cloned();
    let limit = match parameters.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => return error(StatusCode::BAD_REQUEST, "bad_parameter", format!("limit: 1 to {MAX_LIMIT}")),
    };
    let at = match parameters.get("window_start").map(|t| parse_rfc3339_millis(t)) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return error(StatusCode::BAD_REQUEST, "bad_parameter", "window_start: an RFC 3339 time"),
    };
    let local = {
        let (queries, window, region) = (queries.clone(), window.clone(), region.clone());
        blocking(move || {
            let answers = queries.each_task(|engine| engine.sku_windows(&window, region.as_deref()));
            let mut local = LocalHoldings { partitions: Vec::new(), holdings: Vec::new() };
            for (partition, answer) in answers {
                local.partitions.push(partition);
                local.holdings.push(answer?);
            }
            Ok::<_, QueryError>(local)
        })
        .await
    };
    let local = match local {
        Err(response) => return response,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_parameter", format!("window: {e}")),
        Ok(Ok(local)) => local,
    };
    if parameters.get("scope").map(String::as_str) == Some("local") {
        return json_response(StatusCode::OK, &local);
    }
    let members = {
        let queries = queries.clone();
        blocking(move || queries.members(false)).await
    };
    let members = match members {
        Err(response) => return response,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "kafka", e),
        Ok(Ok(members)) => members,
    };
    let owners = match cover(&members, queries.partitions) {
        Ok(owners) => owners,
        Err(task) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_owner",
                format!("task {task} has no owner at the moment"),
            );
        }
    };
    let mut holdings = Vec::new();
    let mut asked = std::collections::BTreeSet::new();
    for (address, partitions) in owners {
        let answer = if address == queries.address {
            None
        } else {
            let path = format!("/v1/top-skus?{}&scope=local", query.clone().unwrap_or_default());
            Some(ask(&address, &path).await)
        };
        let answer = match answer {
            None => LocalHoldings { partitions: local.partitions.clone(), holdings: local.holdings.clone() },
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                return error(StatusCode::BAD_GATEWAY, "peer", format!("asking {address} for its tasks: {e}"));
            }
        };
        for (partition, holding) in answer.partitions.into_iter().zip(answer.holdings) {
            if partitions.contains(&partition) && asked.insert(partition) {
                holdings.push(holding);
            }
        }
    }
    if asked.len() != queries.partitions as usize {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no_owner", "tasks moved while they were asked; retry");
    }
    match top_skus(&holdings, at, limit) {
        None => error(
            StatusCode::NOT_FOUND,
            "no_complete_window",
            format!("no window of {window} has ended on every task and is still held by all of them"),
        ),
        Some(top) => json_response(
            StatusCode::OK,
            &json!({
                "window": window,
                "region": region,
                "window_start": Rfc3339Millis(top.start).to_string(),
                "window_end": Rfc3339Millis(top.end).to_string(),
                "skus": top.skus.iter().map(|(sku, f)| json!({
                    "sku_id": sku, "units_sold": f.units_sold, "net_revenue": f.net_revenue.to_string()
                })).collect::<Vec<_>>(),
            }),
        ),
    }
}

/// `GET http://{address}{path}` of another instance, as JSON.
async fn ask(address: &str, path: &str) -> Result<LocalHoldings, String> {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://{address}{path}").parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(PEER_TIMEOUT, client.get(uri))
        .await
        .map_err(|_| format!("no answer within {PEER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = tokio::time::timeout(PEER_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| format!("body not read within {PEER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

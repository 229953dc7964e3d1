//! JSON logs through tracing; the level comes from `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn,tower=warn"));
    let _ = tracing_subscriber::fmt().json().with_current_span(false).with_env_filter(filter).try_init();
}

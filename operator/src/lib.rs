//! stockpulse operator: reconciles RetailPipeline, StoreRegion and AlertPolicy.
//!
//! Layout: `crd` (the custom resources, one file per kind), `build` (pure: desired objects,
//! topics, processor config, store records), `plan` (pure: what to change given what was
//! observed), `status` (pure: conditions and status), `controller` (observe, apply, status
//! through the API), `kafka_admin` (topics and store records on the broker), `render` (the
//! offline preview), `replicator` (a region's topics from its regional cluster to the
//! pipeline's), `settings` (the operator's own configuration: allowed processor images, what
//! its pods get), `generate` (CRDs and reference docs), `metrics`, `http`, `leader`,
//! `telemetry`, and `fixtures` (test builders and the mocked API server).

pub mod autoscale;
pub mod build;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod error;
pub mod generate;
pub mod http;
pub mod kafka_admin;
pub mod kube_requests;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod render;
pub mod replicator;
pub mod settings;
pub mod status;
pub mod telemetry;

#[cfg(test)]
mod fixtures;

pub use error::{Error, Result};

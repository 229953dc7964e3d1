//! Realistic, seeded traffic for the demo, the benchmark and tests: the example brand's
//! reference data (`brand`) and its store traffic (`traffic`).

pub mod brand;
mod traffic;

pub use traffic::{Disorder, GeneratedEvent, RETURN_WITHIN, Traffic, TrafficOptions};

use crate::config::TopicRole;

/// The input topic an event goes to: SALE and RETURN to `sales`, every other event type to
/// `inventory`; an event whose type cannot be read (dead-lettered either way) to `sales`.
pub fn input_role(payload: &[u8]) -> TopicRole {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        event_type: Option<std::borrow::Cow<'a, str>>,
    }
    match serde_json::from_slice::<Kind<'_>>(payload) {
        Ok(Kind { event_type: Some(kind) }) if !matches!(kind.as_ref(), "SALE" | "RETURN") => TopicRole::Inventory,
        _ => TopicRole::Sales,
    }
}

#[cfg(test)]
mod tests;

//! Realistic, seeded traffic for the demo, the benchmark and tests: the example brand's
//! reference data (`brand`) and its store traffic (`traffic`).

pub mod brand;
mod traffic;

pub use traffic::{Disorder, GeneratedEvent, RETURN_WITHIN, Traffic, TrafficOptions};

#[cfg(test)]
mod tests;

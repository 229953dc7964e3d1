//! Autoscaling of the processor: the pure decision ([`decision`]), the sampler that feeds it
//! from the broker on its own interval ([`sampler`]), and the holiday simulation that
//! measures it against other rules ([`sim`]).

pub mod decision;
pub mod sampler;
pub mod sim;

//! Autoscaling of the processor: the pure decision ([`decision`]), the holiday simulation
//! that measures it against other rules ([`sim`]).

pub mod decision;
pub mod sim;

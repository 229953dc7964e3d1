//! The holiday simulation: `cargo run --release -p stockpulse-operator --example holiday_sim`.
//! Prints, for this operator's autoscaler, a fixed deployment at maxReplicas and KEDA's
//! Kafka rule, the peak lag, time to drain, replica-minutes and scale changes (the table of
//! docs/autoscaling.md). `--timeline` adds the desired replicas of each rule every minute.

use stockpulse_operator::autoscale::sim::{BASE_RATE, holiday, holiday_trace, table};

fn main() {
    let (model, reports) = holiday();
    println!(
        "Holiday trace: {} partitions, {:.0} records/s per replica, pods ready {} s after being asked for, \
         {} s rebalance pause, base load {BASE_RATE:.0}/s, replicas {}..{}\n",
        model.partitions,
        model.capacity_per_replica,
        model.start_delay,
        model.rebalance_pause,
        model.min_replicas,
        model.max_replicas
    );
    print!("{}", table(&reports));
    if std::env::args().any(|a| a == "--timeline") {
        let trace = holiday_trace();
        println!("\nminute  input/s  {}", reports.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(" | "));
        let step: usize = std::env::var("SIM_STEP").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        for t in (0..trace.rates.len()).step_by(step) {
            let minute = t as f64 / 60.0;
            let cols: Vec<String> =
                reports.iter().map(|r| format!("{:>3} {:>6.1}", r.replicas[t], r.lag_seconds[t])).collect();
            println!("{minute:>6.2}  {:>7.0}  {}", trace.rates[t], cols.join(" "));
        }
    }
}

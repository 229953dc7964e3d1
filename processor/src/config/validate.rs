//! Cross-field checks of a `PipelineConfig`, each problem naming its field path.

use std::collections::HashSet;
use std::fmt;

use super::{Dimension, PipelineConfig, TopicRole, WindowKind};

/// One thing wrong with a config, at a field path such as `processing.windows[1].slide`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: String,
    pub message: String,
}

/// All the problems of a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigProblems {}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl PipelineConfig {
    /// Every cross-field rule the schema alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut problems = Vec::new();
        let mut problem = |field: String, message: String| problems.push(ConfigProblem { field, message });

        if self.name.is_empty() {
            problem("name".into(), "must not be empty".into());
        }
        for role in TopicRole::ALL {
            let name = self.topic(role);
            if !valid_topic_name(&name) {
                problem(
                    format!("topics.{role}"),
                    format!("{name:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"),
                );
            }
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            problem("kafka.bootstrapServers".into(), "must not be empty".into());
        }

        let p = &self.processing;
        if p.windows.is_empty() {
            problem("processing.windows".into(), "at least one window is required".into());
        }
        let mut names = HashSet::new();
        for (i, w) in p.windows.iter().enumerate() {
            let at = format!("processing.windows[{i}]");
            if w.name.is_empty() {
                problem(format!("{at}.name"), "must not be empty".into());
            } else if !names.insert(w.name.as_str()) {
                problem(format!("{at}.name"), format!("duplicate window name {:?}", w.name));
            }
            if w.size.as_millis() == 0 {
                problem(format!("{at}.size"), "must be greater than zero".into());
            }
            match (w.kind, w.slide) {
                (WindowKind::Tumbling, Some(_)) => {
                    problem(format!("{at}.slide"), "only sliding windows have a slide".into())
                }
                (WindowKind::Sliding, None) => problem(format!("{at}.slide"), "a sliding window needs a slide".into()),
                (WindowKind::Sliding, Some(slide)) => {
                    if slide.as_millis() == 0 || slide > w.size {
                        problem(
                            format!("{at}.slide"),
                            format!("must be greater than zero and at most size ({})", w.size),
                        );
                    } else if w.size.as_millis() % slide.as_millis() != 0 {
                        problem(format!("{at}.slide"), format!("{slide} must divide size ({}) evenly", w.size));
                    }
                }
                (WindowKind::Tumbling, None) => {}
            }
            let dims = p.group_by_of(w);
            let unique: HashSet<_> = dims.iter().collect();
            if unique.len() != dims.len() {
                problem(format!("{at}.groupBy"), "lists a dimension twice".into());
            }
        }
        let unique: HashSet<_> = p.group_by.iter().collect();
        if unique.len() != p.group_by.len() {
            problem("processing.groupBy".into(), "lists a dimension twice".into());
        }
        if p.dedupe.horizon < p.allowed_lateness {
            problem(
                "processing.dedupe.horizon".into(),
                format!(
                    "must be at least allowedLateness ({}), or a late correction could count a duplicate",
                    p.allowed_lateness
                ),
            );
        }
        if p.dedupe.max_entries == 0 {
            problem("processing.dedupe.maxEntries".into(), "must be at least 1".into());
        }
        if p.idle_timeout.as_millis() == 0 {
            problem("processing.idleTimeout".into(), "must be greater than zero".into());
        }

        let mut policy_names = HashSet::new();
        for (i, a) in self.alerts.iter().enumerate() {
            let at = format!("alerts[{i}]");
            if a.name.is_empty() {
                problem(format!("{at}.name"), "must not be empty".into());
            } else if !policy_names.insert(a.name.as_str()) {
                problem(format!("{at}.name"), format!("duplicate alert policy name {:?}", a.name));
            }
            if a.low_stock.is_none()
                && a.stuck_inventory.is_none()
                && a.sales_spike.is_none()
                && a.amount_outlier.is_none()
            {
                problem(at.clone(), "has no rule (lowStock, stuckInventory, salesSpike or amountOutlier)".into());
            }
            if let Some(r) = &a.low_stock {
                if r.threshold < 0 {
                    problem(format!("{at}.lowStock.threshold"), "must not be negative".into());
                }
                if r.hysteresis.is_some_and(|h| h < 1) {
                    problem(format!("{at}.lowStock.hysteresis"), "must be at least 1".into());
                }
            }
            if let Some(r) = &a.stuck_inventory
                && (r.min_events == 0 || r.period.as_millis() == 0)
            {
                problem(format!("{at}.stuckInventory"), "period and minEvents must be greater than zero".into());
            }
            if let Some(r) = &a.sales_spike {
                if !(r.factor > 1.0 && r.factor.is_finite()) {
                    problem(format!("{at}.salesSpike.factor"), "must be a number greater than 1".into());
                }
                if !(1..=1000).contains(&r.baseline_windows) {
                    problem(format!("{at}.salesSpike.baselineWindows"), "must be between 1 and 1000".into());
                }
                if !(r.min_baseline >= 0.0 && r.min_baseline.is_finite()) {
                    problem(format!("{at}.salesSpike.minBaseline"), "must be a number of at least 0".into());
                }
                match p.windows.iter().find(|w| w.name == r.window) {
                    None => problem(format!("{at}.salesSpike.window"), format!("no window named {:?}", r.window)),
                    Some(w) => {
                        // The rule sees the window's groups: a scope can only name what they carry.
                        let dims = p.group_by_of(w);
                        let scoped = [
                            (Dimension::Store, "stores", &a.scope.stores),
                            (Dimension::Sku, "skus", &a.scope.skus),
                            (Dimension::Region, "regions", &a.scope.regions),
                            (Dimension::Category, "categories", &a.scope.categories),
                        ];
                        for (dim, field, list) in scoped {
                            if !list.is_empty() && !dims.contains(&dim) {
                                problem(
                                    format!("{at}.scope.{field}"),
                                    format!(
                                        "the salesSpike window {:?} is not grouped by {}",
                                        r.window,
                                        format!("{dim:?}").to_lowercase()
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            if let Some(r) = &a.amount_outlier {
                if !(r.sigma > 0.0 && r.sigma.is_finite()) {
                    problem(format!("{at}.amountOutlier.sigma"), "must be a number greater than 0".into());
                }
                if r.min_samples < 2 {
                    problem(format!("{at}.amountOutlier.minSamples"), "must be at least 2".into());
                }
            }
        }

        if problems.is_empty() { Ok(()) } else { Err(ConfigProblems(problems)) }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::PipelineConfig;

    fn problems_of(yaml: &str) -> Vec<String> {
        let config: PipelineConfig = serde_yaml::from_str(yaml).unwrap();
        match config.validate() {
            Ok(()) => vec![],
            Err(p) => p.0.into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect(),
        }
    }

    #[test]
    fn valid_sliding_window_passes() {
        let yaml = "name: p\nprocessing:\n  windows:\n  - {name: t, type: sliding, size: 1h, slide: 5m}\n";
        assert_eq!(problems_of(yaml), Vec::<String>::new());
    }

    #[test]
    fn window_rules_name_the_field() {
        let yaml = "name: p\nprocessing:\n  windows:\n  - {name: a, type: sliding, size: 1h, slide: 7m}\n  - {name: a, type: tumbling, size: 0s}\n  - {name: c, type: sliding, size: 5m, slide: 10m}\n  - {name: d, type: sliding, size: 5m}\n";
        assert_eq!(
            problems_of(yaml),
            vec![
                "processing.windows[0].slide: 7m must divide size (1h) evenly",
                "processing.windows[1].name: duplicate window name \"a\"",
                "processing.windows[1].size: must be greater than zero",
                "processing.windows[2].slide: must be greater than zero and at most size (5m)",
                "processing.windows[3].slide: a sliding window needs a slide",
            ]
        );
    }

    #[test]
    fn dedupe_horizon_must_cover_lateness() {
        let yaml = "name: p\nprocessing:\n  allowedLateness: 2h\n  dedupe: {horizon: 1h}\n";
        assert_eq!(
            problems_of(yaml),
            vec![
                "processing.dedupe.horizon: must be at least allowedLateness (2h), or a late correction could count a duplicate"
            ]
        );
    }

    #[test]
    fn alert_rules_are_checked() {
        let yaml = "name: p\nalerts:\n- {name: x}\n- {name: y, lowStock: {threshold: -1}, salesSpike: {window: nope, factor: 0.5}}\n";
        assert_eq!(
            problems_of(yaml),
            vec![
                "alerts[0]: has no rule (lowStock, stuckInventory, salesSpike or amountOutlier)",
                "alerts[1].lowStock.threshold: must not be negative",
                "alerts[1].salesSpike.factor: must be a number greater than 1",
                "alerts[1].salesSpike.window: no window named \"nope\"",
            ]
        );
    }

    #[test]
    fn bad_topic_name_is_refused() {
        assert_eq!(
            problems_of("name: p\ntopics: {sales: \"bad topic\"}\n"),
            vec!["topics.sales: \"bad topic\" is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"]
        );
    }
}

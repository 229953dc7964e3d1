//! Renders the processor's `PipelineConfig` from a RetailPipeline and the AlertPolicies that
//! name it, with the Secret and ConfigMap files the config points at.

use kube::ResourceExt;
use stockpulse_processor::config::{
    AlertPolicyConfig, AlertScope, AlertSinkConfig, AmountOutlierRule, DedupeConfig, Dimension, Duration,
    EnrichmentConfig, HttpConfig, KafkaConfig, LowStockRule, PipelineConfig, ProcessingConfig, SalesSpikeRule,
    SaslConfig, SpikeMeasure, StuckInventoryRule, TlsConfig, TopicNames, TopicRole, WindowConfig, WindowKind,
};

use super::topics::topic_spec;
use super::{SpecProblem, SpecProblems};
use crate::crd::alert_policy::AlertSink;
use crate::crd::retail_pipeline::{Dimension as CrdDimension, WindowType};
use crate::crd::{AlertPolicy, RetailPipeline};
use crate::credentials::{Credential, credentials};

/// Where the processor container finds its config file.
pub const CONFIG_DIR: &str = "/etc/stockpulse/config";
/// The key of the ConfigMap, and the file name under [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "pipeline.yaml";

/// A file the config points at, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMount {
    /// Volume name (a DNS label).
    pub volume: String,
    /// Directory the volume is mounted at.
    pub dir: String,
    pub source: MountSource,
    /// (key of the source, file name under `dir`)
    pub items: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    Secret(String),
    ConfigMap(String),
}

/// The processor config and the files it needs mounted.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedConfig {
    pub config: PipelineConfig,
    pub mounts: Vec<FileMount>,
    /// Names of the AlertPolicies rendered into `config.alerts`, in order.
    pub alert_policies: Vec<String>,
}

fn duration(field: &str, text: &str, problems: &mut Vec<SpecProblem>) -> Duration {
    match text.parse::<Duration>() {
        Ok(d) => d,
        Err(e) => {
            problems.push(SpecProblem { field: field.to_string(), message: e.to_string() });
            Duration::ZERO
        }
    }
}

fn dimension(d: CrdDimension) -> Dimension {
    match d {
        CrdDimension::Sku => Dimension::Sku,
        CrdDimension::Store => Dimension::Store,
        CrdDimension::Region => Dimension::Region,
        CrdDimension::Category => Dimension::Category,
        CrdDimension::Channel => Dimension::Channel,
    }
}

fn problems_from(result: Result<(), stockpulse_processor::config::ConfigProblems>, prefix: &str) -> Vec<SpecProblem> {
    match result {
        Ok(()) => Vec::new(),
        Err(p) => {
            p.0.into_iter().map(|p| SpecProblem { field: format!("{prefix}{}", p.field), message: p.message }).collect()
        }
    }
}

/// The pipeline's config without alert policies, checked by the processor's own validation.
pub fn base_config(pipeline: &RetailPipeline) -> Result<(PipelineConfig, Vec<FileMount>), SpecProblems> {
    let spec = &pipeline.spec;
    let mut problems = Vec::new();
    let mut mounts = Vec::new();

    // Each Secret key is mounted as the file of its own name.
    let files = |tls: bool| -> Vec<(String, String)> {
        credentials(&spec.kafka.connection)
            .into_iter()
            .filter(|s| s.credential.is_tls() == tls)
            .map(|s| (s.credential.secret_key().to_string(), s.credential.secret_key().to_string()))
            .collect()
    };
    let tls = spec.kafka.connection.tls.as_ref().map(|tls| {
        let items = files(true);
        let dir = "/etc/stockpulse/kafka-tls".to_string();
        mounts.push(FileMount {
            volume: "kafka-tls".to_string(),
            dir: dir.clone(),
            source: MountSource::Secret(tls.secret_ref.name.clone()),
            items,
        });
        TlsConfig {
            ca_file: Some(format!("{dir}/{}", Credential::CaPem.secret_key())),
            cert_file: tls.client_auth.then(|| format!("{dir}/{}", Credential::CertPem.secret_key())),
            key_file: tls.client_auth.then(|| format!("{dir}/{}", Credential::KeyPem.secret_key())),
        }
    });
    let sasl = spec.kafka.connection.sasl.as_ref().map(|sasl| {
        let dir = "/etc/stockpulse/kafka-sasl".to_string();
        mounts.push(FileMount {
            volume: "kafka-sasl".to_string(),
            dir: dir.clone(),
            source: MountSource::Secret(sasl.secret_ref.name.clone()),
            items: files(false),
        });
        SaslConfig {
            mechanism: sasl.mechanism,
            username_file: format!("{dir}/{}", Credential::SaslUsername.secret_key()),
            password_file: format!("{dir}/{}", Credential::SaslPassword.secret_key()),
        }
    });

    let mut topics = TopicNames::default();
    for role in TopicRole::ALL {
        if let Some(name) = &topic_spec(&spec.topics, role).name {
            topics.set(role, name.clone());
        }
    }

    let p = &spec.processing;
    let windows = p
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| WindowConfig {
            name: w.name.clone(),
            kind: match w.type_ {
                WindowType::Tumbling => WindowKind::Tumbling,
                WindowType::Sliding => WindowKind::Sliding,
            },
            size: duration(&format!("spec.processing.windows[{i}].size"), &w.size, &mut problems),
            slide: w.slide.as_ref().map(|s| duration(&format!("spec.processing.windows[{i}].slide"), s, &mut problems)),
            group_by: w.group_by.as_ref().map(|g| g.iter().copied().map(dimension).collect()),
        })
        .collect();
    let catalog_file = p.enrichment.catalog_config_map_ref.as_ref().map(|r| {
        let dir = "/etc/stockpulse/catalog".to_string();
        mounts.push(FileMount {
            volume: "catalog".to_string(),
            dir: dir.clone(),
            source: MountSource::ConfigMap(r.name.clone()),
            items: vec![(r.key.clone(), r.key.clone())],
        });
        format!("{dir}/{}", r.key)
    });
    let processing = ProcessingConfig {
        windows,
        group_by: p.group_by.iter().copied().map(dimension).collect(),
        max_out_of_orderness: duration("spec.processing.maxOutOfOrderness", &p.max_out_of_orderness, &mut problems),
        allowed_lateness: duration("spec.processing.allowedLateness", &p.allowed_lateness, &mut problems),
        idle_timeout: duration("spec.processing.idleTimeout", &p.idle_timeout, &mut problems),
        max_future_skew: duration("spec.processing.maxFutureSkew", &p.max_future_skew, &mut problems),
        dedupe: DedupeConfig {
            horizon: duration("spec.processing.dedupe.horizon", &p.dedupe.horizon, &mut problems),
            max_entries: u64::try_from(p.dedupe.max_entries).unwrap_or(0),
        },
        exactly_once: p.exactly_once,
        enrichment: EnrichmentConfig { catalog_file },
    };
    let http_port = match u16::try_from(spec.processor.http_port) {
        Ok(port) => port,
        Err(_) => {
            problems.push(SpecProblem {
                field: "spec.processor.httpPort".into(),
                message: "must be a port number (1024-65535)".into(),
            });
            8080
        }
    };

    let config = PipelineConfig {
        name: pipeline.name_any(),
        kafka: KafkaConfig {
            bootstrap_servers: spec.kafka.connection.bootstrap_servers.clone(),
            consumer_group: spec.kafka.consumer_group.clone(),
            tls,
            sasl,
        },
        topics,
        processing,
        alerts: Vec::new(),
        http: HttpConfig { port: http_port },
    };
    if problems.is_empty() {
        problems.extend(problems_from(config.validate(), "spec."));
    }
    if problems.is_empty() { Ok((config, mounts)) } else { Err(SpecProblems(problems)) }
}

/// One AlertPolicy as the processor's `AlertPolicyConfig`, checked against the pipeline's
/// config (a `salesSpike` names one of its windows). `webhook_index` numbers the webhook
/// volumes across policies.
pub fn alert_policy_config(
    policy: &AlertPolicy,
    base: &PipelineConfig,
    webhook_index: &mut usize,
) -> Result<(AlertPolicyConfig, Vec<FileMount>), SpecProblems> {
    let spec = &policy.spec;
    let mut problems = Vec::new();
    let mut mounts = Vec::new();
    let sinks = spec
        .sinks
        .iter()
        .enumerate()
        .filter_map(|(i, sink)| match sink {
            AlertSink { kafka: Some(k), webhook: None } => Some(AlertSinkConfig::Kafka { topic: k.topic.clone() }),
            AlertSink { kafka: None, webhook: Some(w) } => {
                let volume = format!("webhook-{}", *webhook_index);
                *webhook_index += 1;
                let dir = format!("/etc/stockpulse/webhooks/{volume}");
                mounts.push(FileMount {
                    volume,
                    dir: dir.clone(),
                    source: MountSource::Secret(w.url_secret_ref.name.clone()),
                    items: vec![(w.url_secret_ref.key.clone(), "url".to_string())],
                });
                Some(AlertSinkConfig::Webhook { url_file: format!("{dir}/url") })
            }
            _ => {
                problems.push(SpecProblem {
                    field: format!("spec.sinks[{i}]"),
                    message: "a sink is exactly one of kafka or webhook".into(),
                });
                None
            }
        })
        .collect();
    let rules = &spec.rules;
    let config = AlertPolicyConfig {
        name: policy.name_any(),
        scope: AlertScope {
            regions: spec.scope.regions.clone(),
            stores: spec.scope.stores.clone(),
            skus: spec.scope.skus.clone(),
            categories: spec.scope.categories.clone(),
        },
        low_stock: rules.low_stock.as_ref().map(|r| LowStockRule { threshold: r.threshold, hysteresis: r.hysteresis }),
        stuck_inventory: rules.stuck_inventory.as_ref().map(|r| StuckInventoryRule {
            period: duration("spec.rules.stuckInventory.period", &r.period, &mut problems),
            min_events: u32::try_from(r.min_events).unwrap_or(0),
        }),
        sales_spike: rules.sales_spike.as_ref().map(|r| SalesSpikeRule {
            window: r.window.clone(),
            factor: r.factor,
            measure: match r.measure {
                Some(crate::crd::alert_policy::SpikeMeasure::Revenue) => SpikeMeasure::Revenue,
                Some(crate::crd::alert_policy::SpikeMeasure::Units) | None => SpikeMeasure::Units,
            },
            baseline_windows: r
                .baseline_windows
                .map_or(SalesSpikeRule::DEFAULT_BASELINE_WINDOWS, |n| u32::try_from(n).unwrap_or(0)),
            min_baseline: r.min_baseline.unwrap_or(SalesSpikeRule::DEFAULT_MIN_BASELINE),
        }),
        amount_outlier: rules.amount_outlier.as_ref().map(|r| AmountOutlierRule {
            sigma: r.sigma,
            min_samples: r
                .min_samples
                .map_or(AmountOutlierRule::DEFAULT_MIN_SAMPLES, |n| u32::try_from(n).unwrap_or(0)),
        }),
        cooldown: duration("spec.cooldown", &spec.cooldown, &mut problems),
        sinks,
    };
    if problems.is_empty() {
        let mut with_policy = base.clone();
        with_policy.alerts = vec![config.clone()];
        let found = problems_from(with_policy.validate(), "");
        for p in found {
            // Only the policy's own problems: the pipeline's were checked before.
            if let Some(rest) = p.field.strip_prefix("alerts[0]") {
                let field = format!("spec.rules{rest}");
                problems.push(SpecProblem { field, message: p.message });
            }
        }
    }
    if problems.is_empty() { Ok((config, mounts)) } else { Err(SpecProblems(problems)) }
}

/// The AlertPolicies of a pipeline: those naming it, sorted by name.
pub fn policies_of<'a>(pipeline: &RetailPipeline, policies: &'a [AlertPolicy]) -> Vec<&'a AlertPolicy> {
    let mut selected: Vec<&AlertPolicy> = policies
        .iter()
        .filter(|p| p.spec.pipeline_ref.name == pipeline.name_any() && p.metadata.deletion_timestamp.is_none())
        .collect();
    selected.sort_by_key(|p| p.name_any());
    selected
}

/// The full config: the pipeline's, plus every valid AlertPolicy naming it. An invalid
/// policy is left out (its own status says why); an invalid pipeline is an error.
pub fn render(pipeline: &RetailPipeline, policies: &[AlertPolicy]) -> Result<RenderedConfig, SpecProblems> {
    let (mut config, mut mounts) = base_config(pipeline)?;
    let mut webhook_index = 0;
    let mut names = Vec::new();
    for policy in policies_of(pipeline, policies) {
        if let Ok((alert, alert_mounts)) = alert_policy_config(policy, &config, &mut webhook_index) {
            config.alerts.push(alert);
            mounts.extend(alert_mounts);
            names.push(policy.name_any());
        }
    }
    Ok(RenderedConfig { config, mounts, alert_policies: names })
}

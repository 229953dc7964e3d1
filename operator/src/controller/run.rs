//! `stockpulse-operator run`: the HTTP endpoints, leader election, then the three
//! controllers side by side until leadership is lost or a signal arrives.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::cache::{self, CacheWriter, Caches};
use super::{Context, alert_policy, error_policy, retail_pipeline, store_region};
use crate::crd::common::KafkaConnection;
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::credentials::credentials;
use crate::http::{HttpState, router};
use crate::kafka_admin::rdkafka_client::RdKafkaAccess;
use crate::kube_requests::CountRequestsLayer;
use crate::leader::{LeaseConfig, keep_leading, release, try_lead};
use crate::metrics::Metrics;
use crate::settings::OperatorSettings;

#[derive(clap::Args, Debug, Clone)]
pub struct RunOptions {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Elect a leader on a Lease (needed with 2+ replicas).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, default_value = "stockpulse-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch Secret metadata, so a Secret a Kafka connection names is picked up as soon as
    /// it is created, fixed or rotated (needs list and watch on Secrets). `false`: it is
    /// picked up at the next retry or resync.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_secrets: bool,
}

pub fn run_blocking(options: RunOptions) -> anyhow::Result<ExitCode> {
    crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(options))?;
    Ok(ExitCode::SUCCESS)
}

fn identity(options: &RunOptions) -> String {
    options.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("stockpulse-operator-{}", std::process::id()))
    })
}

pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let settings = OperatorSettings::from_env().map_err(|e| anyhow::anyhow!(e))?;
    let metrics = Arc::new(Metrics::default());
    let client = kube::client::ClientBuilder::try_from(kube::Config::infer().await?)?
        .with_layer(&CountRequestsLayer::new(metrics.kube_requests.clone()))
        .build();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(options.http_addr).await?;
    let app = router(HttpState { metrics: metrics.clone(), ready: ready.clone() });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let me = identity(&options);
    tracing::info!(identity = %me, "starting");
    ready.store(true, Ordering::Relaxed);

    let lease = LeaseConfig {
        name: options.lease_name.clone(),
        namespace: options.lease_namespace.clone(),
        identity: me.clone(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        renew_every: Duration::from_secs(5),
    };
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
    if options.leader_election {
        loop {
            match try_lead(&leases, &lease, chrono::Utc::now()).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(lease.renew_every).await;
        }
        tracing::info!(identity = %me, lease = %lease.name, "leading");
    }
    let kafka = Arc::new(RdKafkaAccess::default());
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    let ctx =
        Context::new(client.clone(), kafka, metrics, Some(me)).with_settings(settings).with_sampler_trigger(trigger);
    let secrets = Secrets { watch: options.watch_secrets };
    let controllers = run_controllers(client.clone(), options.namespace.clone(), secrets, ctx, triggered);
    let keep_lease = async {
        if !options.leader_election {
            return futures::future::pending::<anyhow::Result<()>>().await;
        }
        Err(keep_leading(&lease, || try_lead(&leases, &lease, chrono::Utc::now())).await)
    };
    let outcome = tokio::select! {
        () = controllers => Ok(()),
        result = keep_lease => result,
    };
    if options.leader_election && outcome.is_ok() {
        // Stopped by a signal: hand the Lease over now rather than let the standby wait for
        // it to expire.
        match release(&leases, &lease).await {
            Ok(true) => tracing::info!(lease = %lease.name, "released the leader lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not release the leader lease; it expires on its own"),
        }
    }
    outcome
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whether the controllers watch Secrets (`--watch-secrets`).
#[derive(Clone, Copy)]
struct Secrets {
    watch: bool,
}

async fn run_controllers(
    client: Client,
    namespace: Option<String>,
    secrets: Secrets,
    ctx: Context,
    autoscaling: futures::channel::mpsc::UnboundedReceiver<ObjectRef<RetailPipeline>>,
) {
    // One reflector per kind the reconciles read: they read these caches, not the API server.
    let (pipeline_cache, pipeline_writer) = cache::cache();
    let (region_cache, region_writer) = cache::cache();
    let (policy_cache, policy_writer) = cache::cache();
    let (deployments, deployment_writer) = cache::cache();
    let (config_maps, config_map_writer) = cache::cache();
    let (services, service_writer) = cache::cache();
    let (service_accounts, service_account_writer) = cache::cache();
    let (pod_disruption_budgets, pdb_writer) = cache::cache();
    let (pipeline_store, region_store, policy_store) =
        (pipeline_cache.store.clone(), region_cache.store.clone(), policy_cache.store.clone());
    let ctx = Arc::new(ctx.with_caches(Caches {
        pipelines: pipeline_cache,
        regions: region_cache,
        policies: policy_cache,
        deployments,
        config_maps,
        services,
        service_accounts,
        pod_disruption_budgets,
    }));

    let pipelines = Controller::for_stream(
        spec_changes(api::<RetailPipeline>(&client, &namespace), Some(pipeline_writer)),
        pipeline_store.clone(),
    );
    let secret_pipelines = pipeline_store.clone();
    let pipelines = pipelines
        // A Secret a pipeline names (Kafka TLS or SASL) created, fixed or rotated: that
        // pipeline is reconciled at once. Only the Secrets' metadata is watched.
        .watches_stream(secret_changes(&client, &namespace, secrets), move |secret| {
            naming_secret(&secret_pipelines.state(), &secret, |p: &RetailPipeline| vec![&p.spec.kafka.connection])
        })
        // What it owns: any change, status included (a Deployment's ready replicas).
        .owns_stream(owned(&client, &namespace, deployment_writer))
        .owns_stream(owned(&client, &namespace, config_map_writer))
        .owns_stream(owned(&client, &namespace, service_writer))
        .owns_stream(owned(&client, &namespace, service_account_writer))
        .owns_stream(owned(&client, &namespace, pdb_writer))
        .watches_stream(spec_changes(api::<StoreRegion>(&client, &namespace), None), |region| {
            let ns = region.namespace().unwrap_or_default();
            Some(ObjectRef::new(&region.spec.pipeline_ref.name).within(&ns))
        })
        .watches_stream(spec_changes(api::<AlertPolicy>(&client, &namespace), None), |policy| {
            let ns = policy.namespace().unwrap_or_default();
            Some(ObjectRef::new(&policy.spec.pipeline_ref.name).within(&ns))
        })
        // The autoscaling samplers ask for a reconcile when their decision differs from the
        // Deployment.
        .reconcile_on(autoscaling)
        .shutdown_on_signal()
        .run(retail_pipeline::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "RetailPipeline controller");
            }
        });
    // Regions and policies are looked at again when the pipeline they name changes (its
    // regionSelector, its topic names, its windows, its deletion); regions also when its
    // topics become ready or go missing.
    let regions = Controller::for_stream(
        spec_changes(api::<StoreRegion>(&client, &namespace), Some(region_writer)),
        region_store.clone(),
    );
    let secret_regions = region_store.clone();
    let regions = regions
        .watches_stream(secret_changes(&client, &namespace, secrets), move |secret| {
            naming_secret(&secret_regions.state(), &secret, |r: &StoreRegion| r.spec.kafka.iter().collect())
        })
        .watches_stream(
            filtered(api::<RetailPipeline>(&client, &namespace), None, pipeline_for_regions),
            move |pipeline| {
                naming(&region_store.state(), &pipeline, |r: &StoreRegion| r.spec.pipeline_ref.name.as_str())
            },
        )
        .shutdown_on_signal()
        .run(store_region::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "StoreRegion controller");
            }
        });
    let policies = Controller::for_stream(
        spec_changes(api::<AlertPolicy>(&client, &namespace), Some(policy_writer)),
        policy_store.clone(),
    );
    let policies = policies
        .watches_stream(spec_changes(api::<RetailPipeline>(&client, &namespace), None), move |pipeline| {
            naming(&policy_store.state(), &pipeline, |p: &AlertPolicy| p.spec.pipeline_ref.name.as_str())
        })
        .shutdown_on_signal()
        .run(alert_policy::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "AlertPolicy controller");
            }
        });
    futures::join!(pipelines, regions, policies);
}

/// What reconciles one of the operator's own kinds: a change of its spec (`generation`, which
/// its deletion bumps too), its labels (a `regionSelector` selects regions by label) or its
/// finalizers (kube's finalizer helper waits for the watch event of its own patch). A status
/// write, the operator's own included, triggers nothing.
pub fn spec_predicate<K: Resource>() -> impl Predicate<K> {
    predicates::generation.combine(predicates::finalizers).combine(predicates::labels)
}

/// What reconciles a region when its pipeline changes: what [`spec_predicate`] passes, and
/// the pipeline's `TopicsReady` condition (a region publishes to the pipeline's `stores`
/// topic, which the pipeline's reconcile creates or finds missing).
pub fn pipeline_for_regions(pipeline: &RetailPipeline) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let topics = pipeline
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TopicsReady"))
        .map(|c| (c.status.as_str(), c.reason.as_str()));
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (spec_predicate().hash_property(pipeline), topics).hash(&mut hasher);
    Some(hasher.finish())
}

/// The watch of one of the operator's own kinds, filtered by [`spec_predicate`]; with a
/// writer, every event (status writes included) also keeps that kind's cache.
fn spec_changes<K>(api: Api<K>, cache: Option<CacheWriter<K>>) -> BoxStream<'static, Result<K, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    filtered(api, cache, spec_predicate())
}

/// The watch of `api`, keeping `cache` when given, passing on the objects whose `predicate`
/// hash changed.
fn filtered<K>(
    api: Api<K>,
    cache: Option<CacheWriter<K>>,
    predicate: impl Predicate<K> + Send + Unpin + 'static,
) -> BoxStream<'static, Result<K, watcher::Error>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let objects = match cache {
        Some(writer) => writer.keep(events).touched_objects().boxed(),
        None => events.touched_objects().boxed(),
    };
    objects.predicate_filter(predicate, Default::default()).boxed()
}

/// The watch of the objects of one kind the operator manages, kept in `cache`.
fn owned<K>(
    client: &Client,
    namespace: &Option<String>,
    cache: CacheWriter<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let managed = watcher::Config::default().labels(super::cache::MANAGED);
    cache.keep(watcher(api::<K>(client, namespace), managed).default_backoff()).touched_objects()
}

/// Every change to a Secret of the watched namespaces, metadata only (no Secret data is
/// held by the operator's watch); nothing ever without the Secret watch.
fn secret_changes(
    client: &Client,
    namespace: &Option<String>,
    secrets: Secrets,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    if !secrets.watch {
        return futures::stream::pending().boxed();
    }
    watcher(api::<PartialObjectMeta<Secret>>(client, namespace), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .boxed()
}

/// The objects of `all` in the Secret's namespace whose Kafka connections name it.
fn naming_secret<K>(
    all: &[Arc<K>],
    secret: &PartialObjectMeta<Secret>,
    connections: impl Fn(&K) -> Vec<&KafkaConnection>,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + ResourceExt,
{
    let name = secret.name_any();
    all.iter()
        .filter(|o| {
            o.namespace() == secret.namespace()
                && connections(o).into_iter().any(|c| credentials(c).iter().any(|s| s.secret == name))
        })
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The objects of `all` in the pipeline's namespace whose `pipelineRef` names it.
fn naming<K>(all: &[Arc<K>], pipeline: &RetailPipeline, pipeline_ref: impl Fn(&K) -> &str) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + ResourceExt,
{
    all.iter()
        .filter(|o| o.namespace() == pipeline.namespace() && pipeline_ref(o) == pipeline.name_any())
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use kube::runtime::Predicate;

    use super::{pipeline_for_regions, spec_predicate};
    use crate::crd::common::Condition;
    use crate::crd::{RetailPipeline, RetailPipelineStatus};
    use crate::fixtures::pipeline;

    fn hash(p: &RetailPipeline) -> Option<u64> {
        spec_predicate().hash_property(p)
    }

    #[test]
    fn a_status_write_triggers_no_reconcile_and_spec_labels_finalizers_do() {
        let mut before = pipeline();
        before.metadata.generation = Some(3);
        before.metadata.resource_version = Some("100".into());

        let mut status_only = before.clone();
        status_only.metadata.resource_version = Some("101".into());
        status_only.status = Some(RetailPipelineStatus { observed_generation: Some(3), ..Default::default() });
        assert_eq!(hash(&status_only), hash(&before));

        let mut spec = before.clone();
        spec.metadata.generation = Some(4);
        let mut labelled = before.clone();
        labelled.labels_mut().insert("tier".into(), "gold".into());
        let mut finalized = before.clone();
        finalized.metadata.finalizers = Some(vec!["retail.stockpulse.io/cleanup".into()]);
        for changed in [&spec, &labelled, &finalized] {
            assert_ne!(hash(changed), hash(&before));
        }
    }

    #[test]
    fn regions_also_hear_of_their_pipelines_topics_becoming_ready() {
        let condition = |status: &str, reason: &str| Condition {
            type_: "TopicsReady".into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            last_transition_time: "2026-12-03T00:00:00Z".into(),
            observed_generation: Some(1),
        };
        let with = |conditions: Vec<Condition>, lag: Option<i64>| {
            let mut p = pipeline();
            p.metadata.generation = Some(1);
            p.status = Some(RetailPipelineStatus { conditions, consumer_lag: lag, ..Default::default() });
            pipeline_for_regions(&p)
        };
        let missing = with(vec![condition("False", "TopicsMissing")], None);
        let ready = with(vec![condition("True", "TopicsReconciled")], None);
        assert_ne!(missing, ready);
        assert_ne!(with(vec![], None), ready);
        // Live figures do not wake the regions.
        assert_eq!(with(vec![condition("True", "TopicsReconciled")], Some(42)), ready);
    }
}

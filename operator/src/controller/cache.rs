//! The watch caches the controllers read instead of asking the API server. `run` keeps a
//! reflector per kind the operator reads in every reconcile (its custom resources and the
//! objects it owns), so a steady reconcile sends no GET and no LIST: it compares what it
//! wants with the cache and writes only on a difference. A cache that lags is harmless: the
//! watch event that brings it up to date triggers the reconcile again.
//!
//! Without caches (the tests that call a reconcile directly) the same reads go to the API
//! server.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::error::{Error, Result};

/// One reflector store per kind the reconciles read; the owned kinds hold only the objects
/// labelled `app.kubernetes.io/managed-by=stockpulse-operator`.
#[derive(Clone)]
pub struct Caches {
    pub pipelines: Store<RetailPipeline>,
    pub regions: Store<StoreRegion>,
    pub policies: Store<AlertPolicy>,
    pub deployments: Store<Deployment>,
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub service_accounts: Store<ServiceAccount>,
    pub pod_disruption_budgets: Store<PodDisruptionBudget>,
}

/// A namespaced kind with a cache in [`Caches`].
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    fn store(caches: &Caches) -> &Store<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(caches: &Caches) -> &Store<Self> {
                &caches.$field
            }
        })*
    };
}

cached! {
    RetailPipeline => pipelines,
    StoreRegion => regions,
    AlertPolicy => policies,
    Deployment => deployments,
    ConfigMap => config_maps,
    Service => services,
    ServiceAccount => service_accounts,
    PodDisruptionBudget => pod_disruption_budgets,
}

/// The store of `K`, once its first list has arrived.
async fn ready_store<K: Cached>(caches: &Caches) -> Result<&Store<K>> {
    let store = K::store(caches);
    store.wait_until_ready().await.map_err(|_| Error::CacheClosed(K::kind(&()).to_string()))?;
    Ok(store)
}

impl Context {
    /// The object `namespace/name` of kind `K`, from the cache when there is one.
    pub async fn get<K: Cached>(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        match &self.caches {
            Some(caches) => {
                let store = ready_store::<K>(caches).await?;
                Ok(store.get(&ObjectRef::new(name).within(namespace)).map(|o| o.as_ref().clone()))
            }
            None => Ok(Api::<K>::namespaced(self.client.clone(), namespace).get_opt(name).await?),
        }
    }

    /// Every object of kind `K` in `namespace`, from the cache when there is one, in name
    /// order.
    pub async fn list<K: Cached>(&self, namespace: &str) -> Result<Vec<K>> {
        let mut objects = match &self.caches {
            Some(caches) => {
                let store = ready_store::<K>(caches).await?;
                store
                    .state()
                    .into_iter()
                    .filter(|o| o.namespace().as_deref() == Some(namespace))
                    .map(|o| o.as_ref().clone())
                    .collect()
            }
            None => Api::<K>::namespaced(self.client.clone(), namespace).list(&ListParams::default()).await?.items,
        };
        objects.sort_by_key(|o| o.name_any());
        Ok(objects)
    }
}

impl Caches {
    /// Caches kept by watches of their own, spawned on the current runtime, for `namespace`
    /// (all namespaces with `None`): for callers that reconcile without `run` (tests), so
    /// that they read what `run` reads. `run` instead shares each watch with its controller.
    pub fn spawn(client: &kube::Client, namespace: Option<&str>) -> Caches {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, reflector, watcher};

        fn keep<K: Cached>(client: &kube::Client, namespace: Option<&str>, managed_only: bool) -> Store<K> {
            let api = match namespace {
                Some(ns) => Api::<K>::namespaced(client.clone(), ns),
                None => Api::<K>::all(client.clone()),
            };
            let config =
                if managed_only { watcher::Config::default().labels(MANAGED) } else { watcher::Config::default() };
            let (reader, writer) = reflector::store();
            let stream = watcher(api, config).default_backoff().reflect(writer).for_each(|_| async {});
            tokio::spawn(stream);
            reader
        }
        Caches {
            pipelines: keep(client, namespace, false),
            regions: keep(client, namespace, false),
            policies: keep(client, namespace, false),
            deployments: keep(client, namespace, true),
            config_maps: keep(client, namespace, true),
            services: keep(client, namespace, true),
            service_accounts: keep(client, namespace, true),
            pod_disruption_budgets: keep(client, namespace, true),
        }
    }
}

/// The label selector of the objects the operator manages.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=stockpulse-operator";

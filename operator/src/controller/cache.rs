//! The watch caches the controllers read instead of asking the API server. `run` keeps a
//! reflector per kind the operator reads in every reconcile (its custom resources and the
//! objects it owns), so a steady reconcile sends no GET and no LIST: it compares what it
//! wants with the cache and writes only on a difference. A cache that lags is harmless: the
//! watch event that brings it up to date triggers the reconcile again.
//!
//! Without caches (the tests that call a reconcile directly) the same reads go to the API
//! server.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::Context;
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::error::{Error, Result};

/// One reflector store per kind the reconciles read; the owned kinds hold only the objects
/// labelled `app.kubernetes.io/managed-by=stockpulse-operator`.
#[derive(Clone)]
pub struct Caches {
    pub pipelines: Cache<RetailPipeline>,
    pub regions: Cache<StoreRegion>,
    pub policies: Cache<AlertPolicy>,
    pub deployments: Cache<Deployment>,
    pub config_maps: Cache<ConfigMap>,
    pub services: Cache<Service>,
    pub service_accounts: Cache<ServiceAccount>,
    pub pod_disruption_budgets: Cache<PodDisruptionBudget>,
}

/// A kind's reflector store, and whether its first list has arrived.
///
/// The readiness is the cache's own: kube's `Store::wait_until_ready` keeps one waker, so of
/// several tasks waiting on it (a controller holding its runner, a reconcile reading the
/// cache) only the last to poll is woken when the list arrives. A reconcile that lost that
/// race waited, with nothing else to wake it, until the next watch event: on a quiet
/// cluster, minutes, and the new pipeline had no status meanwhile.
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    filled: watch::Receiver<bool>,
}

/// The writing end of a [`Cache`]: it keeps the store from a watch's events.
pub struct CacheWriter<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    filled: watch::Sender<bool>,
}

/// An empty cache and its writer.
pub fn cache<K>() -> (Cache<K>, CacheWriter<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, writer) = reflector::store();
    let (filled_tx, filled) = watch::channel(false);
    (Cache { store, filled }, CacheWriter { writer, filled: filled_tx })
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The store, once its first list has arrived (at once after that).
    pub async fn ready(&self) -> std::result::Result<&Store<K>, watch::error::RecvError> {
        let mut filled = self.filled.clone();
        filled.wait_for(|filled| *filled).await?;
        Ok(&self.store)
    }
}

impl<K> CacheWriter<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    /// `events` applied to the store as they pass; the cache is filled once the first list
    /// is in it.
    pub fn keep<S>(self, events: S) -> impl Stream<Item = S::Item> + Send + 'static
    where
        S: Stream<Item = std::result::Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let CacheWriter { writer, filled } = self;
        events.reflect(writer).inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                filled.send_replace(true);
            }
        })
    }
}

/// A namespaced kind with a cache in [`Caches`].
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    fn cache(caches: &Caches) -> &Cache<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn cache(caches: &Caches) -> &Cache<Self> {
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
    K::cache(caches).ready().await.map_err(|_| Error::CacheClosed(K::kind(&()).to_string()))
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
        fn keep<K: Cached>(client: &kube::Client, namespace: Option<&str>, managed_only: bool) -> Cache<K> {
            let api = match namespace {
                Some(ns) => Api::<K>::namespaced(client.clone(), ns),
                None => Api::<K>::all(client.clone()),
            };
            let config =
                if managed_only { watcher::Config::default().labels(MANAGED) } else { watcher::Config::default() };
            let (cache, writer) = cache();
            tokio::spawn(writer.keep(watcher(api, config).default_backoff()).for_each(|_| async {}));
            cache
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_reader_waiting_for_the_first_list_is_let_through() {
        let (cache, writer) = cache::<ConfigMap>();
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.ready().await.map(|store| store.state().len()) })
            })
            .collect();
        // The readers wait (each has polled) before the list arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(readers.iter().all(|r| !r.is_finished()));
        let listed: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "shop"}
        }))
        .unwrap();
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(listed)),
            Ok(watcher::Event::InitDone),
        ]);
        writer.keep(events).for_each(|_| async {}).await;
        for reader in readers {
            let found = tokio::time::timeout(Duration::from_secs(5), reader).await;
            assert_eq!(found.expect("a reader still waits").expect("reader task").ok(), Some(1));
        }
        assert_eq!(cache.ready().await.map(|s| s.state().len()).ok(), Some(1), "at once once filled");
    }

    #[tokio::test]
    async fn a_cache_whose_watch_ended_unfilled_is_closed() {
        let (cache, writer) = cache::<ConfigMap>();
        writer.keep(futures::stream::iter(vec![Ok(watcher::Event::Init)])).for_each(|_| async {}).await;
        assert!(cache.ready().await.is_err());
    }
}

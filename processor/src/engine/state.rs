//! A task's engine state as changelog entries, and its restore.
//!
//! With [`Engine::track_changes`] on, every piece of state that changes is recorded, and
//! [`Engine::drain_changes`] hands the changes out at a commit point as keyed entries: the
//! last value of each key is the state. A runtime writes them to a compacted changelog in
//! the same transaction as the outputs and input offsets; after a crash or a move,
//! [`Engine::restore`] rebuilds an engine from the last value of each key, and it continues
//! exactly where the committed one stood: same positions, panes, revisions, remembered ids,
//! cooldowns and watermarks.
//!
//! Keys are JSON arrays that name what they hold by its ids (never by interned numbers, which
//! differ between processes):
//!
//! | key | value |
//! | --- | --- |
//! | `["pos", store, sku]` | the inventory position |
//! | `["pane", window, pane, [store, sku, region, category, channel, currency]]` | a pane's figures for a group |
//! | `["rev", window, window_index, group]` | the last revision a corrected group emitted |
//! | `["dd", store, slice, seq]` | a chunk of the event ids a store's dedupe slice remembers (hex) |
//! | `["ddc", store]` | a store's dedupe clock: the newest event time checked from it |
//! | `["seq", store, terminal]` | the ranges of sequence numbers a terminal has sent: `{"floor", "newest", "ranges"}` |
//! | `["low", policy, store, sku]` | a low-stock rule's state for a position that fired: armed, last fired |
//! | `["stuck", policy, store, sku]` | a stuck-inventory rule's clock for a position |
//! | `["spike", policy, group]` | a sales-spike rule's recent windows of a group (`store\|sku\|...\|currency`) |
//! | `["outl", policy, store]` | an amount-outlier rule's running distribution of a store's sale lines |
//! | `["mp", window, start, end, group, task]` | a task's partial of a window merged here |
//! | `["mwm", task]` | a task's watermark, as the merge last heard it |
//! | `["merge"]` | the merged watermark |
//! | `["meta"]` | processing time, watermarks, where each window's firing stands |
//!
//! A dropped key (an expired pane, a forgotten slice) is a tombstone: `value` is `None`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alert::{AlertEntry, LowStockState};
use super::dedupe::DedupeEntry;
use super::intern::{Interner, NONE};
use super::inventory::{PositionState, position_key, split_key};
use super::watermark::WatermarkState;
use super::window::{GroupKey, WindowEntry, WindowProgress};
use super::{Engine, Figures};

/// One change of a task's state: its key, and the new value or `None` when it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: String,
    pub value: Option<String>,
}

/// Why a changelog could not be restored; it names the entry.
#[derive(Debug, thiserror::Error)]
#[error("changelog entry {key}: {message}")]
pub struct RestoreError {
    pub key: String,
    pub message: String,
}

/// What a restore read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    pub positions: usize,
    pub pane_groups: usize,
    pub revisions: usize,
    pub dedupe_ids: usize,
    /// Terminals whose sequence numbers deduplicate their events.
    pub terminals: usize,
    /// Alert rules' states (cooldowns, hysteresis, clocks, baselines, distributions).
    pub alert_states: usize,
    /// Other tasks' partials of windows merged here.
    pub merged_partials: usize,
    /// Entries of windows whose size or step changed since they were written: left out.
    pub skipped: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    now: i64,
    watermarks: WatermarkState,
    windows: BTreeMap<String, WindowProgress>,
    dedupe_evicted_early: u64,
}

use super::merge::GroupNames;

fn json<T: Serialize>(value: &T) -> String {
    // Plain data of strings and integers: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

impl Engine {
    /// Starts recording every change of state, for [`Engine::drain_changes`].
    pub fn track_changes(&mut self) {
        self.state_changes.get_or_insert_with(Vec::new);
        for spec in &mut self.windows {
            spec.operator.track_changes();
        }
        self.dedupe.track_changes();
        self.alerts.track_changes();
        if let Some(merge) = self.merge.as_mut() {
            merge.track_changes();
        }
    }

    /// Hands out the state changed since the last call; call it right after
    /// [`Engine::flush`], at a commit point.
    pub fn drain_changes(&mut self, out: &mut Vec<StateChange>) {
        let Some(pending) = self.state_changes.as_mut() else { return };
        out.append(pending);
        let mut windows = BTreeMap::new();
        for spec in &mut self.windows {
            let name = &*spec.name;
            let (stores, skus, labels) = (&self.stores, &self.skus, &self.labels);
            spec.operator.drain_changes(|entry| {
                let change = match entry {
                    WindowEntry::Pane { pane, key, figures } => StateChange {
                        key: json(&("pane", name, pane, group_names(&key, stores, skus, labels))),
                        value: figures.as_ref().map(json),
                    },
                    WindowEntry::Revision { window, key, revision } => StateChange {
                        key: json(&("rev", name, window, group_names(&key, stores, skus, labels))),
                        value: revision.as_ref().map(json),
                    },
                };
                out.push(change);
            });
            windows.insert(name.to_string(), spec.operator.progress());
        }
        let stores = &self.stores;
        self.dedupe.drain_changes(|entry| {
            out.push(match entry {
                DedupeEntry::Chunk { store, slice, seq, ids } => {
                    let value = ids.map(|ids| {
                        let mut hex = String::with_capacity(ids.len() * 32);
                        for id in ids {
                            let _ = write!(hex, "{id:032x}");
                        }
                        json(&hex)
                    });
                    StateChange { key: json(&("dd", &**stores.name(store), slice, seq)), value }
                }
                DedupeEntry::Clock { store, newest } => {
                    StateChange { key: json(&("ddc", &**stores.name(store))), value: Some(json(&newest)) }
                }
                DedupeEntry::Terminal { store, terminal, sequences } => StateChange {
                    key: json(&("seq", &**stores.name(store), &*terminal)),
                    value: sequences.as_ref().map(json),
                },
            });
        });
        let (stores, skus) = (&self.stores, &self.skus);
        self.alerts.drain_changes(|entry| {
            let position = |key| {
                let (store, sku) = split_key(key);
                (&**stores.name(store), &**skus.name(sku))
            };
            out.push(match entry {
                AlertEntry::LowStock { policy, key, state } => {
                    let (store, sku) = position(key);
                    StateChange { key: json(&("low", &*policy, store, sku)), value: state.as_ref().map(json) }
                }
                AlertEntry::Stuck { policy, key, state } => {
                    let (store, sku) = position(key);
                    StateChange { key: json(&("stuck", &*policy, store, sku)), value: state.as_ref().map(json) }
                }
                AlertEntry::Spike { policy, group, state } => {
                    StateChange { key: json(&("spike", &*policy, group)), value: state.as_ref().map(json) }
                }
                AlertEntry::Outlier { policy, store, state } => StateChange {
                    key: json(&("outl", &*policy, &**stores.name(store))),
                    value: state.as_ref().map(json),
                },
            });
        });
        if let Some(merge) = self.merge.as_mut() {
            merge.drain_changes(out);
        }
        let meta = Meta {
            now: self.now,
            watermarks: self.watermarks.state(),
            windows,
            dedupe_evicted_early: self.dedupe.evicted_early,
        };
        out.push(StateChange { key: json(&("meta",)), value: Some(json(&meta)) });
    }

    /// Records a flushed position (called by [`Engine::flush`] while changes are tracked).
    pub(super) fn record_position(&mut self, key: u64, state: PositionState) {
        let (store, sku) = split_key(key);
        let change = StateChange {
            key: json(&("pos", &**self.stores.name(store), &**self.skus.name(sku))),
            value: Some(json(&state)),
        };
        if let Some(pending) = self.state_changes.as_mut() {
            pending.push(change);
        }
    }

    /// Rebuilds state from the last value of each changelog key (tombstoned keys left out),
    /// on a new engine; change tracking is on afterwards.
    pub fn restore<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RestoreReport, RestoreError> {
        self.track_changes();
        let mut parsed = Vec::new();
        let mut meta = None;
        for (key, value) in entries {
            let fail = |message: String| RestoreError { key: key.to_string(), message };
            let parts: Vec<Value> =
                serde_json::from_str(key).map_err(|e| fail(format!("key is not a JSON array: {e}")))?;
            if parts.first().and_then(Value::as_str) == Some("meta") {
                let m: Meta = serde_json::from_str(value).map_err(|e| fail(e.to_string()))?;
                meta = Some(m);
            } else {
                parsed.push((key, parts, value));
            }
        }
        let mut report = RestoreReport::default();
        let mut live_windows = vec![false; self.windows.len()];
        if let Some(meta) = meta {
            self.now = self.now.max(meta.now);
            self.watermarks.restore(meta.watermarks, self.now);
            self.dedupe.evicted_early = meta.dedupe_evicted_early;
            for (index, spec) in self.windows.iter_mut().enumerate() {
                if let Some(progress) = meta.windows.get(&*spec.name) {
                    live_windows[index] = spec.operator.restore_progress(*progress);
                }
            }
        }
        for (key, parts, value) in parsed {
            let fail = |message: &str| RestoreError { key: key.to_string(), message: message.to_string() };
            let kind = parts.first().and_then(Value::as_str).unwrap_or_default();
            match kind {
                "pos" => {
                    let (store, sku) = two_names(&parts).ok_or_else(|| fail("expected [\"pos\", store, sku]"))?;
                    let state: PositionState = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                    let key = position_key(self.stores.intern(store), self.skus.intern(sku));
                    self.inventory.restore(key, state);
                    report.positions += 1;
                }
                "pane" | "rev" => {
                    let (name, at, group) =
                        window_key(&parts).ok_or_else(|| fail("expected [kind, window, index, group]"))?;
                    let Some(index) = self.windows.iter().position(|w| &*w.name == name) else {
                        report.skipped += 1;
                        continue;
                    };
                    if !live_windows[index] {
                        report.skipped += 1;
                        continue;
                    }
                    let key = self.group_key(&group);
                    let entry = if kind == "pane" {
                        let figures: Figures = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                        report.pane_groups += 1;
                        WindowEntry::Pane { pane: at, key, figures: Some(figures) }
                    } else {
                        let revision: u32 = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                        report.revisions += 1;
                        WindowEntry::Revision { window: at, key, revision: Some(revision) }
                    };
                    self.windows[index].operator.restore(entry);
                }
                "dd" if parts.len() == 3 => {
                    // Written before ids were kept per store: they cannot be placed any more.
                    report.skipped += 1;
                }
                "dd" => {
                    let (store, slice, seq) = match (
                        parts.get(1).and_then(Value::as_str),
                        parts.get(2).and_then(Value::as_i64),
                        parts.get(3).and_then(Value::as_u64),
                    ) {
                        (Some(store), Some(slice), Some(seq)) => {
                            (store, slice, u32::try_from(seq).map_err(|_| fail("chunk number too large"))?)
                        }
                        _ => return Err(fail("expected [\"dd\", store, slice, seq]")),
                    };
                    let hex: String = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                    let ids = parse_ids(&hex).ok_or_else(|| fail("ids are not 32-digit hex numbers"))?;
                    report.dedupe_ids += ids.len();
                    let store = self.stores.intern(store);
                    self.dedupe.restore(DedupeEntry::Chunk { store, slice, seq, ids: Some(ids) });
                }
                "ddc" => {
                    let store =
                        parts.get(1).and_then(Value::as_str).ok_or_else(|| fail("expected [\"ddc\", store]"))?;
                    let newest: i64 = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                    let store = self.stores.intern(store);
                    self.dedupe.restore(DedupeEntry::Clock { store, newest });
                }
                "seq" => {
                    let (store, terminal) =
                        two_names(&parts).ok_or_else(|| fail("expected [\"seq\", store, terminal]"))?;
                    let sequences = serde_json::from_str(value).map_err(|e| fail(&e.to_string()))?;
                    let store = self.stores.intern(store);
                    self.dedupe.restore(DedupeEntry::Terminal {
                        store,
                        terminal: terminal.into(),
                        sequences: Some(sequences),
                    });
                    report.terminals += 1;
                }
                "cool" | "low" | "stuck" | "spike" | "outl" => {
                    let entry = self.alert_entry(kind, &parts, value).map_err(|m| fail(&m))?;
                    if self.alerts.restore(entry) {
                        report.alert_states += 1;
                    } else {
                        // A rule that is gone (its policy removed or changed).
                        report.skipped += 1;
                    }
                }
                "merge" | "mwm" | "mp" => {
                    let Some(merge) = self.merge.as_mut() else {
                        // Written with several tasks, read with one: the partials are not ours.
                        report.skipped += 1;
                        continue;
                    };
                    merge.restore(&parts, value).map_err(|e| fail(&e))?;
                    report.merged_partials += usize::from(kind == "mp");
                }
                _ => return Err(fail("unknown kind of state")),
            }
        }
        Ok(report)
    }

    /// An alert rule's changelog entry; `["cool", policy, store, sku]` (a low-stock rule's
    /// last firing, written before hysteresis) restores as an armed position.
    fn alert_entry(&mut self, kind: &str, parts: &[Value], value: &str) -> Result<AlertEntry, String> {
        fn parse<T: serde::de::DeserializeOwned>(value: &str) -> Result<T, String> {
            serde_json::from_str(value).map_err(|e| e.to_string())
        }
        let text = |i: usize| parts.get(i).and_then(Value::as_str);
        let policy: Arc<str> = text(1).ok_or_else(|| format!("expected [\"{kind}\", policy, ...]"))?.into();
        let mut position = || match (text(2), text(3)) {
            (Some(store), Some(sku)) => Ok(position_key(self.stores.intern(store), self.skus.intern(sku))),
            _ => Err(format!("expected [\"{kind}\", policy, store, sku]")),
        };
        Ok(match kind {
            "cool" => {
                let last_fired: i64 = parse(value)?;
                AlertEntry::LowStock {
                    policy,
                    key: position()?,
                    state: Some(LowStockState { armed: true, last_fired: Some(last_fired) }),
                }
            }
            "low" => AlertEntry::LowStock { policy, key: position()?, state: Some(parse(value)?) },
            "stuck" => AlertEntry::Stuck { policy, key: position()?, state: Some(parse(value)?) },
            "spike" => {
                let group = text(2).ok_or("expected [\"spike\", policy, group]")?.to_string();
                AlertEntry::Spike { policy, group, state: Some(parse(value)?) }
            }
            _ => {
                let store = text(2).ok_or("expected [\"outl\", policy, store]")?;
                AlertEntry::Outlier { policy, store: self.stores.intern(store), state: Some(parse(value)?) }
            }
        })
    }

    fn group_key(&mut self, names: &GroupNames) -> GroupKey {
        let mut key = [NONE; 6];
        for (slot, name) in names.iter().enumerate() {
            if let Some(name) = name {
                key[slot] = match slot {
                    0 => self.stores.intern(name),
                    1 => self.skus.intern(name),
                    _ => self.labels.intern(name),
                };
            }
        }
        key
    }
}

pub(super) fn group_names(key: &GroupKey, stores: &Interner, skus: &Interner, labels: &Interner) -> GroupNames {
    std::array::from_fn(|slot| {
        let id = key[slot];
        (id != NONE).then(|| {
            let interner = match slot {
                0 => stores,
                1 => skus,
                _ => labels,
            };
            interner.name(id).to_string()
        })
    })
}

fn two_names(parts: &[Value]) -> Option<(&str, &str)> {
    Some((parts.get(1)?.as_str()?, parts.get(2)?.as_str()?))
}

fn window_key(parts: &[Value]) -> Option<(&str, i64, GroupNames)> {
    let name = parts.get(1)?.as_str()?;
    let at = parts.get(2)?.as_i64()?;
    let group: GroupNames = serde_json::from_value(parts.get(3)?.clone()).ok()?;
    Some((name, at, group))
}

fn parse_ids(hex: &str) -> Option<Vec<u128>> {
    if !hex.len().is_multiple_of(32) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len() / 32).map(|i| u128::from_str_radix(&hex[i * 32..(i + 1) * 32], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::PipelineConfig;
    use crate::engine::InputRecord;
    use crate::generator::brand::{catalog, stores};
    use crate::generator::{GeneratedEvent, Traffic, TrafficOptions};
    use crate::output::Output;
    use crate::reference::ReferenceUpdate;

    fn references() -> Vec<ReferenceUpdate> {
        let mut updates: Vec<ReferenceUpdate> = stores().into_iter().map(ReferenceUpdate::Store).collect();
        updates.extend(catalog().into_iter().map(ReferenceUpdate::Product));
        updates
    }

    fn engine(config: &PipelineConfig, now: i64) -> Engine {
        let mut engine = Engine::new(config, now);
        for update in references() {
            engine.apply_reference(&update);
        }
        engine.assign(0);
        engine.assign(1);
        engine
    }

    /// A task's input: two streams (sales and inventory of one partition), as in the runtime.
    struct Feed {
        topic: Arc<str>,
        events: Vec<GeneratedEvent>,
    }

    impl Feed {
        /// Feeds events `from..to`, committing every 500; returns each commit's outputs
        /// (sorted: the order within a commit is not part of the contract).
        fn run(
            &self,
            engine: &mut Engine,
            from: usize,
            to: usize,
            changelog: &mut HashMap<String, String>,
        ) -> Vec<Vec<String>> {
            let mut commits = Vec::new();
            let mut out = Vec::new();
            for (offset, event) in self.events.iter().enumerate().take(to).skip(from) {
                let stream = usize::from(event.key.len() % 2 == 1);
                engine.tick(event.arrival, &mut out);
                let input = InputRecord {
                    stream,
                    topic: &self.topic,
                    partition: 0,
                    offset: offset as i64,
                    payload: &event.payload,
                };
                engine.process(&input, &mut out);
                if (offset + 1) % 500 == 0 {
                    engine.flush(&mut out);
                    let mut changes = Vec::new();
                    engine.drain_changes(&mut changes);
                    for change in changes {
                        match change.value {
                            Some(value) => changelog.insert(change.key, value),
                            None => changelog.remove(&change.key),
                        };
                    }
                    let mut records: Vec<String> =
                        out.drain(..).map(|o: Output| format!("{:?} {} {}", o.role(), o.key(), o.to_json())).collect();
                    records.sort();
                    commits.push(records);
                }
            }
            commits
        }
    }

    #[test]
    fn a_restored_engine_continues_exactly_like_the_original() {
        let config = PipelineConfig::example();
        let options = TrafficOptions { seed: 11, peak_events_per_second: 300.0, ..TrafficOptions::default() };
        let feed = Feed {
            topic: Arc::from("acme-sports.sales"),
            events: Traffic::new(options.clone(), &stores(), &catalog()).take(24_000).collect(),
        };
        let mut original = engine(&config, options.start);
        original.track_changes();
        let mut changelog = HashMap::new();
        let mut done = 0;
        for cut in [4_000, 11_000, 17_500] {
            feed.run(&mut original, done, cut, &mut changelog);
            done = cut;
            let mut restored = engine(&config, options.start);
            let entries = changelog.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            let report = restored.restore(entries).expect("restore");
            assert!(report.positions > 100 && report.pane_groups > 100 && report.dedupe_ids > 1_000, "{report:?}");
            for kind in ["stuck", "spike", "outl"] {
                let prefix = format!("[\"{kind}\"");
                assert!(changelog.keys().any(|k| k.starts_with(&prefix)), "no {kind} state in the changelog");
            }
            assert!(report.alert_states > 1_000, "{report:?}");
            assert_eq!(report.skipped, 0);
            // A restored engine's inputs start active (records may wait for it): the original
            // continues the same once its inputs are marked so at the cut.
            original.backlog(original.now());
            let mut original_copy = HashMap::new();
            let mut restored_log = HashMap::new();
            let from_original = feed.run(&mut original, cut, feed.events.len(), &mut original_copy);
            let from_restored = feed.run(&mut restored, cut, feed.events.len(), &mut restored_log);
            assert!(from_original.iter().map(Vec::len).sum::<usize>() > 1_000);
            assert_eq!(from_original, from_restored, "outputs after a restore at event {cut}");
            assert_eq!(original_copy, restored_log, "state changes after a restore at event {cut}");
            assert!(original.stats().alerts > 0);
            // Go on from the cut with the original only: the next restore starts later.
            original = engine(&config, options.start);
            original.restore(changelog.iter().map(|(k, v)| (k.as_str(), v.as_str()))).expect("restore");
        }
    }

    #[test]
    fn tombstones_keep_the_changelog_bounded() {
        let config = PipelineConfig::example();
        let options = TrafficOptions { seed: 3, peak_events_per_second: 300.0, ..TrafficOptions::default() };
        let feed = Feed {
            topic: Arc::from("acme-sports.sales"),
            events: Traffic::new(options.clone(), &stores(), &catalog()).take(30_000).collect(),
        };
        let mut engine = engine(&config, options.start);
        engine.track_changes();
        let mut changelog = HashMap::new();
        feed.run(&mut engine, 0, feed.events.len(), &mut changelog);
        let size = engine.state_size();
        let count = |kind: &str| changelog.keys().filter(|k| k.starts_with(&format!("[\"{kind}\""))).count();
        assert_eq!(count("pos"), size.positions, "one entry per position");
        assert_eq!(count("pane"), size.pane_groups, "expired panes are tombstoned");
        assert_eq!(count("rev"), size.fired_groups, "expired revisions are tombstoned");
        let ids: usize = changelog
            .iter()
            .filter(|(k, _)| k.starts_with("[\"dd\""))
            .map(|(_, v)| v.len().saturating_sub(2) / 32)
            .sum();
        assert_eq!(ids, size.dedupe_ids, "forgotten slices are tombstoned");
        assert_eq!(count("seq"), size.terminals, "one entry per terminal");
        assert_eq!(count("meta"), 1);
    }

    #[test]
    fn a_corrupt_entry_is_named() {
        let config = PipelineConfig::example();
        let mut engine = engine(&config, 0);
        let err = engine.restore([(r#"["pos","S1"]"#, "{}")]).unwrap_err();
        assert_eq!(err.to_string(), r#"changelog entry ["pos","S1"]: expected ["pos", store, sku]"#);
        let err = engine.restore([(r#"["dd","S1",1,0]"#, r#""abc""#)]).unwrap_err();
        assert!(err.to_string().contains("32-digit hex"), "{err}");
        let err = engine.restore([("not json", "1")]).unwrap_err();
        assert!(err.to_string().starts_with("changelog entry not json: key is not a JSON array"), "{err}");
    }
}

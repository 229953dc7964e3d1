//! The engine: pure event processing. Bytes in, records out; no I/O, no clock reads.
//!
//! Per record: parse and validate -> future-skew guard -> dedupe -> enrich -> inventory
//! (and alert rules) -> windows -> watermark. Processing time enters only through
//! [`Engine::tick`], event time only through events, so a run is a function of its inputs.

mod alert;
mod dedupe;
mod enrich;
mod figures;
mod intern;
mod inventory;
mod merge;
mod query;
mod state;
mod watermark;
mod window;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Dimension, PipelineConfig, WindowConfig};
use crate::event::time::format_rfc3339_millis;
use crate::event::{Channel, Currency, parse_event};
use crate::output::{AggregateRecord, DeadLetterRecord, InventoryRecord, LateRecord, Output, SourceCoordinates};
use crate::reference::ReferenceUpdate;

use alert::{AlertRules, Fired, Names, Subject};
use dedupe::{Dedupe, Verdict};
use enrich::Enrichment;
pub use enrich::UNKNOWN;
pub use figures::Figures;
use intern::{Interner, NONE};
use inventory::{InventoryTable, Position, position_key, split_key};
use merge::Merge;
pub use merge::{GroupNames, MergeError, Partial, RepartitionRecord};
pub use query::{HeldWindow, QueryError, SkuFigures, TopSkus, WindowHoldings, top_skus};
pub use state::{RestoreError, RestoreReport, StateChange};
use watermark::Watermarks;
use window::{GroupKey, WindowOperator, WindowResult};

/// One input record: an event's raw bytes and where they came from. `stream` numbers the
/// input partitions of this engine (0, 1, ...) for watermark tracking.
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    pub stream: usize,
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
}

impl InputRecord<'_> {
    fn coordinates(&self) -> SourceCoordinates {
        SourceCoordinates { topic: self.topic.clone(), partition: self.partition, offset: self.offset }
    }
}

/// Counters of what the engine did; exported as metrics and printed by the demo and bench.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    pub events_in: u64,
    pub events_applied: u64,
    pub dead_lettered: u64,
    pub dead_letter_reasons: BTreeMap<&'static str, u64>,
    pub duplicates: u64,
    /// Events sent to the late output (too late for a window, or for deduplication).
    pub late_events: u64,
    pub beyond_dedupe_horizon: u64,
    pub window_results: u64,
    pub corrections: u64,
    pub alerts: u64,
    /// Alerts a rule held back because its cooldown for the key had not passed.
    pub alerts_suppressed: u64,
    pub inventory_records: u64,
    pub dedupe_evicted_early: u64,
    /// Partials of other tasks that came after their merged window's state was dropped.
    pub late_partials: u64,
    /// Events kept although their channel is one this version does not know.
    pub unknown_channels: u64,
}

impl EngineStats {
    /// Adds another engine's counters (several partitions' engines, one summary).
    pub fn add(&mut self, other: &EngineStats) {
        self.events_in += other.events_in;
        self.events_applied += other.events_applied;
        self.dead_lettered += other.dead_lettered;
        for (reason, count) in &other.dead_letter_reasons {
            *self.dead_letter_reasons.entry(reason).or_insert(0) += count;
        }
        self.duplicates += other.duplicates;
        self.late_events += other.late_events;
        self.beyond_dedupe_horizon += other.beyond_dedupe_horizon;
        self.window_results += other.window_results;
        self.corrections += other.corrections;
        self.alerts += other.alerts;
        self.alerts_suppressed += other.alerts_suppressed;
        self.inventory_records += other.inventory_records;
        self.dedupe_evicted_early += other.dedupe_evicted_early;
        self.late_partials += other.late_partials;
        self.unknown_channels += other.unknown_channels;
    }
}

impl std::fmt::Display for EngineStats {
    /// One line: what came in and where it went.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events: {} applied, {} duplicates dropped, {} late, {} dead-lettered; {} window results ({} corrections), {} inventory records, {} alerts",
            self.events_in,
            self.events_applied,
            self.duplicates,
            self.late_events,
            self.dead_lettered,
            self.window_results,
            self.corrections,
            self.inventory_records,
            self.alerts
        )?;
        if self.unknown_channels > 0 {
            write!(f, "; {} with a channel this version does not know (given the store's)", self.unknown_channels)?;
        }
        Ok(())
    }
}

/// Sizes of the engine's state, for metrics and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateSize {
    pub dedupe_ids: usize,
    /// Terminals whose events are deduplicated by sequence number, and their ranges.
    pub terminals: usize,
    pub sequence_ranges: usize,
    pub positions: usize,
    pub pane_groups: usize,
    pub fired_groups: usize,
    /// Groups of windows merged here from several tasks' partials.
    pub merged_groups: usize,
}

struct WindowSpec {
    name: Arc<str>,
    /// Which of the six group-key slots this window keeps (store, sku, region, category,
    /// channel; currency always).
    keep: [bool; 6],
    /// Whether the window's groups span tasks (no `store`): with several tasks its results
    /// are partials for the repartition stage's merge.
    spans_tasks: bool,
    /// Set by [`Engine::scale_out`]: results go out as partials.
    partial: bool,
    operator: WindowOperator,
}

impl WindowSpec {
    fn new(config: &WindowConfig, dims: &[Dimension], lateness: i64) -> Self {
        let mut keep = [false, false, false, false, false, true];
        for dim in dims {
            keep[slot(*dim)] = true;
        }
        WindowSpec {
            name: Arc::from(config.name.as_str()),
            keep,
            spans_tasks: !dims.contains(&Dimension::Store),
            partial: false,
            operator: WindowOperator::new(config.size.as_millis_i64(), config.step().as_millis_i64(), lateness),
        }
    }

    fn project(&self, full: &GroupKey) -> GroupKey {
        let mut key = *full;
        for (value, keep) in key.iter_mut().zip(self.keep) {
            if !keep {
                *value = NONE;
            }
        }
        key
    }
}

fn slot(dim: Dimension) -> usize {
    match dim {
        Dimension::Store => 0,
        Dimension::Sku => 1,
        Dimension::Region => 2,
        Dimension::Category => 3,
        Dimension::Channel => 4,
    }
}

pub struct Engine {
    windows: Vec<WindowSpec>,
    dedupe: Dedupe,
    watermarks: Watermarks,
    inventory: InventoryTable,
    alerts: AlertRules,
    enrichment: Enrichment,
    stores: Interner,
    skus: Interner,
    labels: Interner,
    unknown: u32,
    channel_labels: [u32; 4],
    currencies: Vec<(Currency, u32)>,
    now: i64,
    max_future_skew: i64,
    stats: EngineStats,
    window_results: Vec<WindowResult>,
    fired_alerts: Vec<Fired>,
    /// State changed since the last drain, when a changelog is kept ([`Engine::track_changes`]).
    state_changes: Option<Vec<StateChange>>,
    lateness: i64,
    /// This engine's task number when windows' partials are merged across tasks.
    task: Option<u32>,
    /// The merge of other tasks' partials that this task owns ([`Engine::scale_out`]).
    merge: Option<Merge>,
    merged: Vec<AggregateRecord>,
}

impl Engine {
    /// A new engine for `config`; `now` is the processing time (epoch ms) it starts at.
    pub fn new(config: &PipelineConfig, now: i64) -> Self {
        let p = &config.processing;
        let lateness = p.allowed_lateness.as_millis_i64();
        let windows = p.windows.iter().map(|w| WindowSpec::new(w, p.group_by_of(w), lateness)).collect();
        let mut labels = Interner::default();
        let unknown = labels.intern(UNKNOWN);
        let channel_labels = Channel::ALL.map(|c| labels.intern(c.as_str()));
        let mut stores = Interner::default();
        let mut skus = Interner::default();
        let alerts = AlertRules::new(&config.alerts, &p.windows, lateness, &mut stores, &mut skus, &mut labels);
        Engine {
            windows,
            dedupe: Dedupe::new(p.dedupe.horizon.as_millis_i64(), p.dedupe.max_entries),
            watermarks: Watermarks::new(p.max_out_of_orderness.as_millis_i64(), p.idle_timeout.as_millis_i64()),
            inventory: InventoryTable::default(),
            alerts,
            enrichment: Enrichment::default(),
            stores,
            skus,
            labels,
            unknown,
            channel_labels,
            currencies: Vec::new(),
            now,
            max_future_skew: p.max_future_skew.as_millis_i64(),
            stats: EngineStats::default(),
            window_results: Vec::new(),
            fired_alerts: Vec::new(),
            state_changes: None,
            lateness,
            task: None,
            merge: None,
            merged: Vec::new(),
        }
    }

    /// Makes this engine task `task` of `tasks` (input partitions): windows grouped without
    /// `store` then emit partials ([`Output::Partial`]) for the repartition topic, and this
    /// engine merges the partials that the repartition partition of the same number brings
    /// ([`Engine::merge_input`]). The same partition brings every task's watermark: while
    /// this task's inputs are idle it takes the pipeline's clock from them, so its windows
    /// close with the rest. Nothing changes with one task. Call it before restoring or
    /// processing anything.
    pub fn scale_out(&mut self, task: u32, tasks: u32) {
        if tasks <= 1 {
            return;
        }
        for spec in &mut self.windows {
            spec.partial = spec.spans_tasks;
        }
        self.task = Some(task);
        let mut merge = Merge::new(tasks, self.lateness);
        if self.state_changes.is_some() {
            merge.track_changes();
        }
        self.merge = Some(merge);
    }

    /// Whether this engine takes part in a repartition stage ([`Engine::scale_out`]).
    pub fn repartitions(&self) -> bool {
        self.merge.is_some()
    }

    /// This task's watermark and whether its inputs are idle, as the other tasks need it: their
    /// merges, and their clocks while they are idle. Every partial of a window ending at or
    /// before the watermark has been emitted before it.
    pub fn watermark_report(&self) -> (i64, bool) {
        (self.watermarks.current(), self.watermarks.all_idle())
    }

    /// The task's inputs hold records it has not processed yet (fetched, or on the broker past
    /// its position): they count as active at `now`, so the task never turns idle, nor takes
    /// the pipeline's clock, before its backlog is done.
    pub fn backlog(&mut self, now: i64) {
        self.now = self.now.max(now);
        self.watermarks.backlog(self.now);
    }

    /// While every input of this task is idle, its watermark follows the pipeline's clock (the
    /// other tasks' watermarks, heard on the repartition partition): windows fire, partials
    /// included, as they do in the tasks that still have events.
    fn follow_pipeline(&mut self, out: &mut Vec<Output>) {
        let (Some(merge), Some(task)) = (self.merge.as_ref(), self.task) else { return };
        if !self.watermarks.all_idle() {
            return;
        }
        let own = merge::UpstreamClock { watermark: self.watermarks.current(), idle: true };
        if self.watermarks.follow(merge.pipeline_clock(task, own)) {
            self.on_watermark(out);
        }
    }

    /// Takes one record of the repartition topic (another task's partial or watermark):
    /// merged aggregates go to `out`; a record that is not a valid repartition record goes
    /// to the dead-letter output with its reason.
    pub fn merge_input(&mut self, input: &InputRecord<'_>, out: &mut Vec<Output>) {
        let Some(merge) = self.merge.as_mut() else {
            let reason = "repartition_record_unexpected: this pipeline has no window merged across tasks".to_string();
            self.dead_letter(input, "repartition_record_unexpected", reason, out);
            return;
        };
        let applied = serde_json::from_slice::<RepartitionRecord>(input.payload)
            .map_err(|e| format!("not a repartition record: {e}"))
            .and_then(|record| merge.apply(record, &mut self.merged).map_err(|e| e.to_string()));
        self.stats.late_partials = merge.late_partials;
        match applied {
            Ok(()) => {
                self.emit_merged(out);
                self.follow_pipeline(out);
            }
            Err(message) => {
                let reason = format!("repartition_record_invalid: {message}");
                self.dead_letter(input, "repartition_record_invalid", reason, out);
            }
        }
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn watermark(&self) -> i64 {
        self.watermarks.current()
    }

    pub fn now(&self) -> i64 {
        self.now
    }

    pub fn state_size(&self) -> StateSize {
        let (pane_groups, fired_groups) =
            self.windows.iter().map(|w| w.operator.state_size()).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let (terminals, sequence_ranges) = self.dedupe.terminal_ranges();
        StateSize {
            dedupe_ids: self.dedupe.remembered(),
            terminals,
            sequence_ranges,
            positions: self.inventory.count(),
            pane_groups,
            fired_groups,
            merged_groups: self.merge.as_ref().map_or(0, Merge::groups),
        }
    }

    /// Starts tracking an input partition; it holds the watermark back until it has data or
    /// turns idle.
    pub fn assign(&mut self, stream: usize) {
        self.watermarks.assign(stream, self.now);
    }

    /// Stops tracking an input partition.
    pub fn revoke(&mut self, stream: usize, out: &mut Vec<Output>) {
        self.watermarks.revoke(stream);
        self.on_watermark(out);
    }

    /// Applies a change of reference data; later events see it, earlier results stay.
    pub fn apply_reference(&mut self, update: &ReferenceUpdate) {
        match update {
            ReferenceUpdate::Store(record) => {
                let id = self.stores.intern(&record.store_id);
                self.enrichment.upsert_store(id, record, &mut self.labels);
            }
            ReferenceUpdate::StoreRemoved(store_id) => {
                if let Some(id) = self.stores.get(store_id) {
                    self.enrichment.remove_store(id);
                }
            }
            ReferenceUpdate::Product(record) => {
                let id = self.skus.intern(&record.sku_id);
                self.enrichment.upsert_product(id, record, &mut self.labels);
            }
            ReferenceUpdate::ProductRemoved(sku_id) => {
                if let Some(id) = self.skus.get(sku_id) {
                    self.enrichment.remove_product(id);
                }
            }
        }
    }

    /// Advances processing time: idle partitions stop holding the watermark back, and a task
    /// whose inputs are all idle takes the pipeline's clock.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Output>) {
        self.now = self.now.max(now);
        if self.watermarks.tick(self.now) {
            self.on_watermark(out);
        }
        self.follow_pipeline(out);
    }

    /// End of input: the watermark goes to infinity, every window fires, inventory flushes.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        self.finish_inputs(out);
        self.finish_merge(out);
    }

    /// End of this task's input: its own windows fire (partials included), inventory flushes.
    pub fn finish_inputs(&mut self, out: &mut Vec<Output>) {
        self.watermarks.finish();
        self.on_watermark(out);
        self.flush(out);
    }

    /// End of the repartition input: every merged window fires with the partials it has.
    pub fn finish_merge(&mut self, out: &mut Vec<Output>) {
        if let Some(merge) = self.merge.as_mut() {
            merge.finish(&mut self.merged);
            self.emit_merged(out);
        }
    }

    /// Emits the inventory positions changed since the last flush (call at commit points).
    pub fn flush(&mut self, out: &mut Vec<Output>) {
        let (stores, skus) = (&self.stores, &self.skus);
        let tracking = self.state_changes.is_some();
        let mut changed = Vec::new();
        let mut emitted = 0;
        self.inventory.drain_dirty(|key, position| {
            out.push(Output::Inventory(inventory_record(stores, skus, key, position)));
            if tracking {
                changed.push((key, inventory::PositionState::from(position)));
            }
            emitted += 1;
        });
        self.stats.inventory_records += emitted;
        for (key, state) in changed {
            self.record_position(key, state);
        }
    }

    /// Every inventory position, as records (the read API and the demo's view).
    pub fn positions(&self) -> impl Iterator<Item = InventoryRecord> + '_ {
        self.inventory.iter().map(|(key, position)| inventory_record(&self.stores, &self.skus, key, position))
    }

    /// Processes one input record.
    pub fn process(&mut self, input: &InputRecord<'_>, out: &mut Vec<Output>) {
        self.stats.events_in += 1;
        let event = match parse_event(input.payload) {
            Ok(event) => event,
            Err(invalid) => {
                let reason = invalid.to_string();
                self.dead_letter(input, invalid.code, reason, out);
                return;
            }
        };
        if event.unknown_channel {
            self.stats.unknown_channels += 1;
        }
        if event.event_time > self.now.saturating_add(self.max_future_skew) {
            let reason = format!(
                "event_time_in_future: event_time {} is more than {} ahead of processing time {}",
                format_rfc3339_millis(event.event_time),
                crate::config::Duration::from_millis(self.max_future_skew as u64),
                format_rfc3339_millis(self.now)
            );
            self.dead_letter(input, "event_time_in_future", reason, out);
            return;
        }
        let watermark = self.watermarks.current();
        let store = self.stores.intern(&event.store_id);
        let terminal = event.terminal_id.as_deref().zip(event.sequence);
        match self.dedupe.check(event.event_id, store, event.event_time, terminal) {
            Verdict::New => self.stats.dedupe_evicted_early = self.dedupe.evicted_early,
            Verdict::Duplicate => {
                self.stats.duplicates += 1;
                return;
            }
            Verdict::BeyondHorizon { newest } => {
                let reason = format!(
                    "beyond_dedupe_horizon: event_time {} is older than the deduplication horizon behind store {}'s newest event {}; not applied",
                    format_rfc3339_millis(event.event_time),
                    event.store_id,
                    format_rfc3339_millis(newest)
                );
                self.stats.beyond_dedupe_horizon += 1;
                self.late(input, &event, "beyond_dedupe_horizon", reason, out);
                return;
            }
        }
        self.stats.events_applied += 1;

        let sku = self.skus.intern(&event.sku_id);
        let (region, store_channel) = self.enrichment.store(store).unwrap_or((self.unknown, self.unknown));
        let category = self.enrichment.category(sku).unwrap_or(self.unknown);
        let channel = event.channel.map(|c| self.channel_labels[c as usize]).unwrap_or(store_channel);

        let key = position_key(store, sku);
        let change = self.inventory.apply(key, &event);
        if self.alerts.on_events() {
            let subject = Subject { key, store, sku, region, category };
            self.alerts.evaluate(subject, change, &event, &mut self.fired_alerts);
            self.emit_alerts(out);
        }

        if let (Some(delta), Some(currency)) = (Figures::of_event(&event), event.currency) {
            let currency = self.currency_label(currency);
            let full_key: GroupKey = [store, sku, region, category, channel, currency];
            let mut missed: Vec<(usize, u32)> = Vec::new();
            for index in 0..self.windows.len() {
                let spec = &mut self.windows[index];
                let placement = spec.operator.add(
                    event.event_time,
                    spec.project(&full_key),
                    &delta,
                    watermark,
                    &mut self.window_results,
                );
                self.stats.corrections += u64::from(placement.corrections);
                if placement.missed_windows > 0 {
                    missed.push((index, placement.missed_windows));
                }
                self.emit_window_results(index, out);
            }
            if !missed.is_empty() {
                let list: Vec<String> = missed
                    .iter()
                    .map(|(i, n)| format!("{} ({n} window{})", self.windows[*i].name, if *n == 1 { "" } else { "s" }))
                    .collect();
                let reason = format!(
                    "beyond_allowed_lateness: event_time {} is too late for {} at watermark {}; inventory applied it",
                    format_rfc3339_millis(event.event_time),
                    list.join(", "),
                    format_rfc3339_millis(watermark)
                );
                self.late(input, &event, "beyond_allowed_lateness", reason, out);
            }
        }

        if self.watermarks.observe(input.stream, event.event_time, self.now) {
            self.on_watermark(out);
        }
    }

    fn currency_label(&mut self, currency: Currency) -> u32 {
        if let Some((_, id)) = self.currencies.iter().find(|(c, _)| *c == currency) {
            return *id;
        }
        let id = self.labels.intern(currency.as_str());
        self.currencies.push((currency, id));
        id
    }

    fn on_watermark(&mut self, out: &mut Vec<Output>) {
        let watermark = self.watermarks.current();
        for index in 0..self.windows.len() {
            self.windows[index].operator.advance(watermark, &mut self.window_results);
            self.emit_window_results(index, out);
        }
    }

    fn emit_window_results(&mut self, index: usize, out: &mut Vec<Output>) {
        if self.window_results.is_empty() {
            return;
        }
        let name = &self.windows[index].name;
        if let (true, Some(task)) = (self.windows[index].partial, self.task) {
            for r in self.window_results.drain(..) {
                out.push(Output::Partial(Partial {
                    task,
                    window: name.to_string(),
                    start: r.start,
                    end: r.end,
                    group: state::group_names(&r.key, &self.stores, &self.skus, &self.labels),
                    figures: r.figures,
                    revision: r.revision,
                }));
            }
            return;
        }
        let label = |id: u32, interner: &Interner| (id != NONE).then(|| interner.name(id).clone());
        for r in self.window_results.drain(..) {
            self.stats.window_results += 1;
            out.push(Output::Aggregate(AggregateRecord {
                window: name.clone(),
                window_start: r.start,
                window_end: r.end,
                store_id: label(r.key[0], &self.stores),
                sku_id: label(r.key[1], &self.skus),
                region: label(r.key[2], &self.labels),
                category: label(r.key[3], &self.labels),
                channel: label(r.key[4], &self.labels),
                currency: self.labels.name(r.key[5]).clone(),
                units_sold: r.figures.units_sold,
                units_returned: r.figures.units_returned,
                gross_revenue: r.figures.gross_revenue,
                returns_revenue: r.figures.returns_revenue,
                net_revenue: r.figures.net_revenue(),
                transactions: r.figures.transactions,
                revision: r.revision,
            }));
            if let (true, Some(Output::Aggregate(record))) = (self.alerts.on_windows(), out.last()) {
                self.alerts.evaluate_window(record, &mut self.fired_alerts);
            }
        }
        self.emit_alerts(out);
    }

    /// Windows merged across tasks: their aggregates, and the spike rules on them.
    fn emit_merged(&mut self, out: &mut Vec<Output>) {
        self.stats.window_results += self.merged.len() as u64;
        if self.alerts.on_windows() {
            for record in &self.merged {
                self.alerts.evaluate_window(record, &mut self.fired_alerts);
            }
        }
        out.extend(self.merged.drain(..).map(Output::Aggregate));
        self.emit_alerts(out);
    }

    /// The alerts the rules fired, as records.
    fn emit_alerts(&mut self, out: &mut Vec<Output>) {
        self.stats.alerts_suppressed = self.alerts.suppressed;
        if self.fired_alerts.is_empty() {
            return;
        }
        let names = Names { stores: &self.stores, skus: &self.skus, labels: &self.labels };
        for fired in self.fired_alerts.drain(..) {
            self.stats.alerts += 1;
            out.push(Output::Alert(Box::new(fired.into_record(&names))));
        }
    }

    fn dead_letter(&mut self, input: &InputRecord<'_>, code: &'static str, reason: String, out: &mut Vec<Output>) {
        self.stats.dead_lettered += 1;
        *self.stats.dead_letter_reasons.entry(code).or_insert(0) += 1;
        out.push(Output::DeadLetter(DeadLetterRecord {
            reason_code: code,
            reason,
            original: input.payload.to_vec(),
            source: input.coordinates(),
        }));
    }

    fn late(
        &mut self,
        input: &InputRecord<'_>,
        event: &crate::event::Event<'_>,
        code: &'static str,
        reason: String,
        out: &mut Vec<Output>,
    ) {
        self.stats.late_events += 1;
        out.push(Output::Late(LateRecord {
            reason_code: code,
            reason,
            event_id: uuid::Uuid::from_u128(event.event_id).to_string(),
            event_time: event.event_time,
            original: input.payload.to_vec(),
            source: input.coordinates(),
        }));
    }
}

fn inventory_record(stores: &Interner, skus: &Interner, key: u64, position: &Position) -> InventoryRecord {
    let (store, sku) = split_key(key);
    InventoryRecord {
        store_id: stores.name(store).clone(),
        sku_id: skus.name(sku).clone(),
        on_hand: position.on_hand,
        reserved: position.reserved,
        available: position.available(),
        last_event_time: position.last_event_time,
        velocity_7d: position.velocity_7d(),
        days_of_inventory: position.days_of_inventory(),
        sell_through_date: position.sell_through_time(),
    }
}

#[cfg(test)]
mod clock_tests;
#[cfg(test)]
mod tests;

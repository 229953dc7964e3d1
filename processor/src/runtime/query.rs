//! The read API's plumbing: which instance owns a task, and asking it.
//!
//! Every instance's consumer carries its HTTP address in its `client.id`
//! (`stockpulse@HOST:PORT`). The group's description (the coordinator's list of members and
//! their assignments) then tells which address owns sales partition `p`, so a key is answered
//! by the instance that owns it, and a question over every task is asked of every member.
//! The description is cached for a few seconds and read again when it names no owner.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::RunError;
use super::worker::Worker;
use crate::engine::Engine;

/// The `client.id` prefix that carries an instance's HTTP address.
pub const ADDRESS_PREFIX: &str = "stockpulse@";

/// How long a group description is trusted.
const OWNERS_TTL: Duration = Duration::from_secs(5);

/// One member of the group: its address and the sales partitions (tasks) it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub address: String,
    pub partitions: Vec<i32>,
}

pub struct Queries {
    worker: Arc<Mutex<Worker>>,
    consumer: BaseConsumer,
    group: String,
    sales: String,
    pub partitions: u32,
    pub address: String,
    /// The last description read: when, after how many of this instance's rebalances, and
    /// its members.
    members: Mutex<Option<(Instant, u64, Vec<Member>)>>,
}

impl Queries {
    pub fn new(
        worker: Arc<Mutex<Worker>>,
        client: &ClientConfig,
        group: &str,
        sales: &str,
        partitions: u32,
        address: String,
    ) -> Result<Self, RunError> {
        let consumer: BaseConsumer =
            client.create().map_err(|e| RunError::kafka("creating the read API's group reader", e))?;
        Ok(Queries {
            worker,
            consumer,
            group: group.to_string(),
            sales: sales.to_string(),
            partitions,
            address,
            members: Mutex::new(None),
        })
    }

    /// Runs `f` on the engine of task `partition` if this instance holds it.
    pub fn with_task<T>(&self, partition: i32, f: impl FnOnce(&Engine) -> T) -> Option<T> {
        let worker = self.worker.lock().ok()?;
        worker.task_engine(partition).map(f)
    }

    /// Runs `f` on every task this instance holds: (partition, result), by partition.
    pub fn each_task<T>(&self, mut f: impl FnMut(&Engine) -> T) -> Vec<(i32, T)> {
        let Ok(worker) = self.worker.lock() else { return Vec::new() };
        worker.task_engines().map(|(partition, engine)| (partition, f(engine))).collect()
    }

    /// The group's members with an address, as the coordinator last described them (read
    /// again when older than a few seconds, when this instance has been through a rebalance
    /// since, or when `fresh`).
    pub fn members(&self, fresh: bool) -> Result<Vec<Member>, String> {
        let rebalances = self.worker.lock().map(|w| w.rebalances).unwrap_or(u64::MAX);
        if !fresh
            && let Ok(cached) = self.members.lock()
            && let Some((at, seen, members)) = cached.as_ref()
            && at.elapsed() < OWNERS_TTL
            && *seen == rebalances
        {
            return Ok(members.clone());
        }
        let list = self
            .consumer
            .fetch_group_list(Some(&self.group), Duration::from_secs(5))
            .map_err(|e| format!("describing consumer group {}: {e}", self.group))?;
        let mut members = Vec::new();
        for group in list.groups() {
            for member in group.members() {
                let Some(address) = member.client_id().strip_prefix(ADDRESS_PREFIX) else { continue };
                let partitions =
                    member.assignment().and_then(|bytes| assigned_partitions(bytes, &self.sales)).unwrap_or_default();
                members.push(Member { address: address.to_string(), partitions });
            }
        }
        if let Ok(mut cached) = self.members.lock() {
            *cached = Some((Instant::now(), rebalances, members.clone()));
        }
        Ok(members)
    }

    /// The address of the instance that owns task `partition`, if any does: possibly this
    /// instance's own, while the task comes to it.
    pub fn owner_of(&self, partition: i32) -> Result<Option<String>, String> {
        let find =
            |members: &[Member]| members.iter().find(|m| m.partitions.contains(&partition)).map(|m| m.address.clone());
        let owner = find(&self.members(false)?);
        match owner {
            // A stale description may name this instance, or no one, during a rebalance.
            Some(address) if address != self.address => Ok(Some(address)),
            _ => Ok(find(&self.members(true)?)),
        }
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (version, then an array of
/// topic name and partition array, then user data; big-endian).
pub fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut reader = Reader { bytes, at: 0 };
    let _version = reader.i16()?;
    let topics = reader.i32()?;
    let mut found = Vec::new();
    for _ in 0..topics.max(0) {
        let name = reader.string()?;
        let count = reader.i32()?;
        for _ in 0..count.max(0) {
            let partition = reader.i32()?;
            if name == topic.as_bytes() {
                found.push(partition);
            }
        }
    }
    found.sort_unstable();
    Some(found)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.i16()?).ok()?;
        self.take(len)
    }
}

/// The members that together own every one of `partitions` tasks, or the first task no one
/// owns.
pub fn cover(members: &[Member], partitions: u32) -> Result<BTreeMap<String, Vec<i32>>, i32> {
    let mut by_address: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for partition in 0..partitions as i32 {
        let owner = members.iter().find(|m| m.partitions.contains(&partition)).ok_or(partition)?;
        by_address.entry(owner.address.clone()).or_default().push(partition);
    }
    Ok(by_address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = vec![0, 3];
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                bytes.extend(p.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // no user data
        bytes
    }

    #[test]
    fn reads_the_partitions_of_a_topic_from_an_assignment() {
        let bytes = assignment(&[("p.inventory", &[2, 0]), ("p.sales", &[2, 0]), ("p.repartition", &[0])]);
        assert_eq!(assigned_partitions(&bytes, "p.sales"), Some(vec![0, 2]));
        assert_eq!(assigned_partitions(&bytes, "p.other"), Some(vec![]));
        assert_eq!(assigned_partitions(&bytes[..9], "p.sales"), None, "cut short");
        assert_eq!(assigned_partitions(&[], "p.sales"), None);
    }

    #[test]
    fn every_task_needs_an_owner() {
        let members = [
            Member { address: "a:1".into(), partitions: vec![0, 2] },
            Member { address: "b:1".into(), partitions: vec![1] },
        ];
        let cover = cover(&members, 3).unwrap();
        assert_eq!(cover["a:1"], vec![0, 2]);
        assert_eq!(super::cover(&members, 4), Err(3));
    }
}

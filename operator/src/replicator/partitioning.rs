//! Which target partition a copied record goes to.
//!
//! A keyed record goes where Kafka's default partitioner (Java's murmur2, librdkafka's
//! `murmur2_random`) puts its key among the TARGET topic's partitions, so it lands beside the
//! records the pipeline's own producers send with that key, whatever partitioner the
//! region's producers used and however many partitions the regional topic has. The
//! processor relies on that: sales partition p and inventory partition p hold the same
//! stores. (Keeping the source partition number would agree only when both sides use
//! murmur2 and have as many partitions; librdkafka's default is a CRC32 partitioner.)
//! A record without a key keeps its source partition number, folded into the target's count.

use stockpulse_processor::partitioner::partition_of;

/// The target partition of a record from `source_partition` with `key`, among
/// `target_partitions` (a count of 0 gives partition 0, never a division by zero).
pub fn target_partition(key: Option<&[u8]>, source_partition: i32, target_partitions: u32) -> i32 {
    let count = target_partitions.max(1);
    let partition = match key {
        Some(key) => partition_of(key, count),
        None => u32::try_from(source_partition).unwrap_or(0) % count,
    };
    // `partition` < `count` <= u32::MAX; a count above i32::MAX does not exist in Kafka.
    i32::try_from(partition).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_where_java_kafka_puts_them() {
        // murmur2("21") = -973932308: (-973932308 & 0x7fffffff) = 1173551340.
        assert_eq!(target_partition(Some(b"21"), 5, 4), 0, "1173551340 % 4");
        assert_eq!(target_partition(Some(b"21"), 5, 7), 3, "1173551340 % 7");
        // The source partition plays no part for a keyed record.
        assert_eq!(target_partition(Some(b"foobar"), 0, 12), target_partition(Some(b"foobar"), 3, 12));
    }

    #[test]
    fn keyless_records_keep_their_partition_number_folded_into_the_target() {
        assert_eq!(target_partition(None, 3, 8), 3);
        assert_eq!(target_partition(None, 9, 4), 1);
        assert_eq!(target_partition(None, -1, 4), 0);
        assert_eq!(target_partition(None, 3, 0), 0);
        assert_eq!(target_partition(Some(b"x"), 3, 0), 0);
    }
}

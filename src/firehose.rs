//! firehose: what Amazon Data Firehose allows and what it bills — the service's
//! numbers, in one place, each with its source (docs/design.md#firehose-rules).
//!
//! Every stage that needs "500 records" or "1,000 KiB" imports the name from here:
//! the tail (which lines can never be a record, how many lines fill a call), the
//! batch stage (where to cut), the ship stage (how much one call carries), the
//! configuration (what the duplicate window must hold) and the metrics (billing).

/// Firehose's per-record limit: 1,000 KiB of data (Firehose quotas page). A line
/// (with its `\n`) above this can never be a record.
pub const MAX_RECORD_BYTES: usize = 1_024_000;

/// PutRecordBatch takes at most 500 records (Firehose quotas page).
pub const MAX_BATCH_RECORDS: usize = 500;

/// PutRecordBatch takes at most 4 MiB of data. Counted on the raw data, before base64;
/// if Firehose ever counts otherwise, its `InvalidArgumentException` makes the ship
/// stage split the call in halves.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Where firetail cuts a batch by size: a quarter of Firehose's limit. Memory scales
/// with in-flight bytes (each call holds its records, the SDK's base64 JSON body, and
/// TLS buffers: ~3× its data), so 4 calls of 1 MiB stay near 12 MiB where 4 MiB calls
/// would take ~50 MiB — and a 1 MiB call still amortises the per-call cost (~100 µs of
/// signing and bookkeeping) over a megabyte. 300-byte lines fill 500 records at
/// 150 KB, far below it.
pub const BATCH_BYTES: usize = 1024 * 1024;
const _: () = assert!(BATCH_BYTES <= MAX_BATCH_BYTES && BATCH_BYTES >= MAX_RECORD_BYTES);

/// Firehose's JSON de-aggregation (dynamic partitioning's multi-record deaggregation)
/// splits at most 500 records out of one: the most lines `--aggregate` packs into one.
pub const MAX_DEAGGREGATED_RECORDS: usize = 500;

/// Firehose bills ingestion per record rounded up to the next 5 KB (Firehose
/// pricing page); 5 KB there is 5,120 bytes.
pub const BILLING_INCREMENT: u64 = 5120;

/// The billable size of one record.
pub fn billable(record_len: u64) -> u64 {
    record_len.div_ceil(BILLING_INCREMENT).max(1) * BILLING_INCREMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billable_rounds_up_to_5kb() {
        assert_eq!(billable(1), 5120);
        assert_eq!(billable(300), 5120);
        assert_eq!(billable(5120), 5120);
        assert_eq!(billable(5121), 10240);
        assert_eq!(billable(1_024_000), 1_024_000);
    }
}

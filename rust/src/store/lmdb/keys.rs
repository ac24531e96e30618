//! Byte layouts of the keys and values the store writes (documented in
//! `docs/journal-format.md`). Integers in keys are big-endian so LMDB's byte order is their
//! numeric order.

use super::Lease;

/// Journal key: invocation id ‖ first position (u64 BE).
pub(crate) fn journal_key(invocation: &[u8; 16], first_position: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(invocation);
    key[16..].copy_from_slice(&first_position.to_be_bytes());
    key
}

/// The position in the journal key of a journal's end record (format 4): its value is the
/// number of entries the journal holds (u64 BE), so a segment lost from the end is noticed.
pub(crate) const JOURNAL_END: u64 = u64::MAX;

/// The first position encoded in a journal key, or `None` when the key is malformed.
pub(crate) fn journal_key_position(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(16..24)?.try_into().ok()?;
    (key.len() == 24).then(|| u64::from_be_bytes(tail))
}

/// Queue key: sequence number (u64 BE) ‖ invocation id.
pub(crate) fn queue_key(seq: u64, invocation: &[u8; 16]) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(invocation);
    key
}

/// The invocation id of a queue key.
pub(crate) fn queue_key_invocation(key: &[u8]) -> Option<[u8; 16]> {
    (key.len() == 24)
        .then(|| key[8..].try_into().ok())
        .flatten()
}

/// A u64 stored big-endian (counters, the queue index).
pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

/// Lease value: owner bytes ‖ expires_ms (u64 BE) ‖ token (u64 BE).
pub(crate) fn encode_lease(lease: &Lease) -> Vec<u8> {
    let mut out = Vec::with_capacity(lease.owner.len() + 16);
    out.extend_from_slice(&lease.owner);
    out.extend_from_slice(&lease.expires_ms.to_be_bytes());
    out.extend_from_slice(&lease.token.to_be_bytes());
    out
}

/// Decode a lease value; `None` when it is shorter than its two fixed fields.
pub(crate) fn decode_lease(bytes: &[u8]) -> Option<Lease> {
    let split = bytes.len().checked_sub(16)?;
    let (owner, fixed) = bytes.split_at(split);
    Some(Lease {
        owner: owner.to_vec(),
        expires_ms: decode_u64(&fixed[..8])?,
        token: decode_u64(&fixed[8..])?,
    })
}

/// Keys of the `counters` database.
pub(crate) const COUNTER_LEASE_TOKEN: &[u8] = b"lease_token";
pub(crate) const COUNTER_QUEUE_SEQ: &[u8] = b"queue_seq";

/// Key of the format version in the `meta` database.
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_with_any_owner() {
        for owner in [&b""[..], b"worker-1", &[0xff; 40]] {
            let lease = Lease {
                owner: owner.to_vec(),
                expires_ms: 1234,
                token: 99,
            };
            assert_eq!(decode_lease(&encode_lease(&lease)), Some(lease));
        }
        assert_eq!(decode_lease(&[1, 2, 3]), None);
    }

    #[test]
    fn keys_sort_numerically() {
        let id = [7u8; 16];
        assert!(journal_key(&id, 255) < journal_key(&id, 256));
        assert!(queue_key(255, &[9; 16]) < queue_key(256, &[0; 16]));
        assert_eq!(journal_key_position(&journal_key(&id, 4096)), Some(4096));
        assert_eq!(queue_key_invocation(&queue_key(3, &id)), Some(id));
    }
}

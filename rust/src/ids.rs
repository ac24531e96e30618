//! Invocation ids: 16 bytes, shown as UUID strings.
//!
//! A child's id is derived from (parent id, parent attempt, position of the dispatch), so
//! dispatching again on replay names the same child and never creates a second one. Derived ids
//! are RFC 9562 version-8 UUIDs: `BLAKE3::derive_key("pynenc-replay child id v1", parent ‖
//! attempt (u32 BE) ‖ position (u64 BE))`, first 16 bytes, version and variant bits set.

use crate::error::{Error, Result};

const CHILD_CONTEXT: &str = "pynenc-replay child id v1";
const JOURNAL_CONTEXT: &str = "pynenc-replay attempt journal v1";

/// The key under which attempt `attempt` of `invocation` keeps its journal: the invocation id
/// itself for the first attempt, a derived v8 id for each retry (so attempts never mix).
pub fn journal_id(invocation: &[u8; 16], attempt: u32) -> [u8; 16] {
    if attempt == 0 {
        return *invocation;
    }
    let mut material = [0u8; 20];
    material[..16].copy_from_slice(invocation);
    material[16..].copy_from_slice(&attempt.to_be_bytes());
    let key = blake3::derive_key(JOURNAL_CONTEXT, &material);
    let mut id: [u8; 16] = key[..16].try_into().expect("16 bytes");
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// The id of the child dispatched at `position` by attempt `attempt` of `parent`.
pub fn child_id(parent: &[u8; 16], attempt: u32, position: u64) -> [u8; 16] {
    let mut material = [0u8; 28];
    material[..16].copy_from_slice(parent);
    material[16..20].copy_from_slice(&attempt.to_be_bytes());
    material[20..].copy_from_slice(&position.to_be_bytes());
    let key = blake3::derive_key(CHILD_CONTEXT, &material);
    let mut id: [u8; 16] = key[..16].try_into().expect("16 bytes");
    id[6] = (id[6] & 0x0f) | 0x80;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// Parse a UUID string (any RFC 9562 form) into 16 bytes.
pub fn parse(s: &str) -> Result<[u8; 16]> {
    uuid::Uuid::parse_str(s)
        .map(|u| *u.as_bytes())
        .map_err(|e| Error::InvalidArgument(format!("invalid invocation id {s:?}: {e}")))
}

/// Format 16 bytes as a lowercase hyphenated UUID string.
pub fn format(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_v8_and_stable() {
        let parent = parse("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let id = uuid::Uuid::from_bytes(child_id(&parent, 0, 3));
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(child_id(&parent, 0, 3), child_id(&parent, 0, 3));
        assert_ne!(child_id(&parent, 0, 3), child_id(&parent, 0, 4));
    }

    #[test]
    fn attempts_keep_separate_journals() {
        let inv = [3u8; 16];
        assert_eq!(journal_id(&inv, 0), inv);
        assert_ne!(journal_id(&inv, 1), inv);
        assert_ne!(journal_id(&inv, 1), journal_id(&inv, 2));
    }

    #[test]
    fn parse_rejects_garbage_with_a_clear_error() {
        let err = parse("not-a-uuid").unwrap_err().to_string();
        assert!(err.contains("not-a-uuid"), "{err}");
    }
}

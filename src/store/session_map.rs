//! The live sessions' map, keyed by half of each session key. With
//! 1,000,000 sessions its table has 2^21 buckets (a power of two, at most
//! 7/8 full), so each byte of a bucket costs two bytes a session: the
//! bucket holds the key's first 16 bytes and a pointer (24 bytes), the
//! other 16 bytes sit in the record's block, and every lookup compares all
//! 32. Two live keys with the same first half (a chance of about n²/2^129)
//! would share one slot: the newer session replaces the older, and neither
//! can be reached with the other's key.

use std::hash::{BuildHasherDefault, Hasher};

use dashmap::DashMap;
use dashmap::mapref::one::{MappedRef, MappedRefMut};

use super::SessionKey;
use super::compact::CompactRecord;

/// The first half of a session key: the map's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct KeyHead([u8; 16]);

type KeyTail = [u8; 16];

fn split(key: &SessionKey) -> (KeyHead, KeyTail) {
    let mut head = [0u8; 16];
    let mut tail = [0u8; 16];
    head.copy_from_slice(&key.0[..16]);
    tail.copy_from_slice(&key.0[16..]);
    (KeyHead(head), tail)
}

fn join(head: &KeyHead, tail: &KeyTail) -> SessionKey {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(&head.0);
    key[16..].copy_from_slice(tail);
    SessionKey(key)
}

/// Hashes a session key by its first eight bytes. The key is already a
/// SHA-256 of an id from the OS RNG, and only ids with a valid signature
/// are ever looked up, so nobody can aim keys at one bucket; hashing it
/// again (SipHash) was a tenth of the request's own work.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(8) ^ u64::from_le_bytes(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A record with the half of its key that the map's key lacks: 72 bytes,
/// an 80-byte heap block.
pub(super) struct Slot {
    tail: KeyTail,
    record: CompactRecord,
}

pub(super) type SessionRef<'a> = MappedRef<'a, KeyHead, Box<Slot>, CompactRecord>;
pub(super) type SessionRefMut<'a> = MappedRefMut<'a, KeyHead, Box<Slot>, CompactRecord>;

#[derive(Default)]
pub(super) struct SessionMap(DashMap<KeyHead, Box<Slot>, BuildHasherDefault<KeyHasher>>);

impl SessionMap {
    pub(super) fn get(&self, key: &SessionKey) -> Option<SessionRef<'_>> {
        let (head, tail) = split(key);
        let slot = self.0.get(&head)?;
        slot.try_map(|slot| (slot.tail == tail).then_some(&slot.record))
            .ok()
    }

    pub(super) fn get_mut(&self, key: &SessionKey) -> Option<SessionRefMut<'_>> {
        let (head, tail) = split(key);
        let slot = self.0.get_mut(&head)?;
        slot.try_map(|slot| (slot.tail == tail).then_some(&mut slot.record))
            .ok()
    }

    pub(super) fn insert(&self, key: &SessionKey, record: CompactRecord) {
        let (head, tail) = split(key);
        self.0.insert(head, Box::new(Slot { tail, record }));
    }

    /// Whether the session was there.
    pub(super) fn remove(&self, key: &SessionKey) -> bool {
        let (head, tail) = split(key);
        self.0
            .remove_if(&head, |_, slot| slot.tail == tail)
            .is_some()
    }

    /// Removes the session and hands back its record, if it was there.
    pub(super) fn take(&self, key: &SessionKey) -> Option<CompactRecord> {
        let (head, tail) = split(key);
        self.0
            .remove_if(&head, |_, slot| slot.tail == tail)
            .map(|(_, slot)| slot.record)
    }

    /// Empties the map (a shared store's cache after its feed broke).
    pub(super) fn clear(&self) {
        self.0.clear();
    }

    pub(super) fn contains_key(&self, key: &SessionKey) -> bool {
        self.get(key).is_some()
    }

    /// Visits every session; the shard being visited stays read-locked.
    pub(super) fn for_each(&self, mut visit: impl FnMut(&SessionKey, &CompactRecord)) {
        for entry in self.0.iter() {
            visit(
                &join(entry.key(), &entry.value().tail),
                &entry.value().record,
            );
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_a_half_key_and_a_pointer_and_a_slot_fits_80_bytes() {
        assert_eq!(std::mem::size_of::<(KeyHead, Box<Slot>)>(), 24);
        assert_eq!(std::mem::size_of::<Slot>(), 72);
    }

    #[test]
    fn a_key_that_shares_only_the_first_half_finds_nothing() {
        let mut emails = std::collections::HashSet::new();
        let mut record = || {
            let stored = crate::store::SessionRecord {
                user: "a@example.com".into(),
                level: crate::store::AuthLevel::TwoFactor,
                auth_time: 1,
                second_factor_time: None,
                created_at: 1,
                last_seen: 1,
                challenge: None,
                device: None,
                second_factor_method: None,
                client: None,
            };
            CompactRecord::new(stored, &mut emails).unwrap()
        };
        let map = SessionMap::default();
        let key = SessionKey([7; 32]);
        let mut twin = key;
        twin.0[31] = 8;
        map.insert(&key, record());
        assert!(map.get(&key).is_some());
        assert!(map.get(&twin).is_none());
        assert!(map.get_mut(&twin).is_none());
        assert!(!map.remove(&twin));
        let mut seen = Vec::new();
        map.for_each(|key, _| seen.push(*key));
        assert_eq!(seen, vec![key]);
        assert!(map.remove(&key));
        assert!(map.is_empty());
    }
}

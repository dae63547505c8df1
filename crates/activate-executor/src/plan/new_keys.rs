//! The keys read that are not in the state, kept to catch a key read twice (every such key is
//! planned as an insert, so it is in the plan's `upsert_keys`).
//!
//! A model is most often read in key order (a table scanned in the order it was written, an
//! `order by`). While every new key sorts after the one before, no new key can repeat an
//! earlier one, and only the last one is kept: no hash and no table probe a row. A first sync
//! of 1,000,000 rows would otherwise probe a table of 1,000,000 keys at random, a cache miss
//! a row (a quarter of the diff's time on a first snapshot, docs/performance.md). At the
//! first key out of order, every new key so far goes into a table of positions in
//! `upsert_keys` (8 bytes a key, compared by their text, so a repeat is never missed), and
//! the table is used from then on.

use super::{ChangeKind, KeyList, PlannedRow};

/// Whether `key` sorts after `last`: by length, then by bytes. For integer keys without a
/// sign this is their numeric order, so ids read in order stay on the fast path.
fn sorts_after(key: &str, last: &str) -> bool {
    key.len() > last.len() || (key.len() == last.len() && key.as_bytes() > last.as_bytes())
}

/// A key in the table: 32 bits of its hash (kept, so growing the table rehashes no key
/// text) and its position in the plan's `upsert_keys`.
#[derive(Clone, Copy)]
struct Entry {
    hash: u32,
    position: u32,
}

fn key_hash(key: &str) -> u32 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as u32
}

/// The table's hash of an [`Entry`]: its 32 bits spread over 64 (the table takes its bucket
/// from the low bits and a tag from the high ones).
fn table_hash(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Default)]
pub(super) struct NewKeys {
    /// Some new key was read out of order: the table holds every new key.
    unordered: bool,
    /// The last new key read, while they come in order.
    last: String,
    table: hashbrown::HashTable<Entry>,
    /// The hash of the key just found new (unordered), for [`NewKeys::planned`].
    pending: Option<u32>,
}

impl NewKeys {
    /// Whether `key`, not in the state, is read for the first time. `keys` and `upserts` are
    /// the plan so far (the new keys are its inserts). A key found new must then be planned
    /// and [`NewKeys::planned`] told where.
    pub(super) fn is_first(&mut self, key: &str, keys: &KeyList, upserts: &[PlannedRow]) -> bool {
        if !self.unordered {
            if self.last.is_empty() || sorts_after(key, &self.last) {
                self.last.clear();
                self.last.push_str(key);
                return true;
            }
            self.unordered = true;
            self.last = String::new();
            for (position, row) in upserts.iter().enumerate() {
                if row.kind == ChangeKind::Insert {
                    self.insert(key_hash(keys.get(position)), position);
                }
            }
        }
        let hash = key_hash(key);
        let repeated = self
            .table
            .find(table_hash(hash), |k| {
                k.hash == hash && keys.get(k.position as usize) == key
            })
            .is_some();
        self.pending = (!repeated).then_some(hash);
        !repeated
    }

    /// The key [`NewKeys::is_first`] found new is planned at `position` in `upsert_keys`.
    pub(super) fn planned(&mut self, position: usize) {
        if let Some(hash) = self.pending.take() {
            self.insert(hash, position);
        }
    }

    fn insert(&mut self, hash: u32, position: usize) {
        let position = u32::try_from(position).expect("fewer than 4 billion upserts");
        self.table
            .insert_unique(table_hash(hash), Entry { hash, position }, |k| {
                table_hash(k.hash)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_length_then_bytes() {
        assert!(sorts_after("[10]", "[9]"));
        assert!(sorts_after("[11]", "[10]"));
        assert!(!sorts_after("[10]", "[10]"));
        assert!(!sorts_after("[9]", "[10]"));
        assert!(sorts_after("[\"b\"]", "[\"a\"]"));
    }

    /// Every key sequence's repeats are found, in order, out of order, and across the
    /// switch from the last key to the table: the answers of a plain set.
    #[test]
    fn a_repeated_key_is_found_in_every_order() {
        let sequences: Vec<Vec<u32>> = vec![
            vec![1, 2, 3, 1],
            vec![1, 2, 3, 3],
            vec![3, 2, 1, 2, 3],
            vec![9, 10, 11, 10, 12, 9, 13],
            vec![5, 5],
            vec![1, 100, 20, 100, 20, 3, 1000, 3],
            (1..500).chain([250, 1, 499, 500, 1]).collect(),
        ];
        for keys_read in sequences {
            let mut new_keys = NewKeys::default();
            let mut keys = KeyList::default();
            let mut upserts = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for id in &keys_read {
                let key = format!("[{id}]");
                let first = new_keys.is_first(&key, &keys, &upserts);
                assert_eq!(first, seen.insert(*id), "{id} in {keys_read:?}");
                if first {
                    new_keys.planned(keys.len());
                    keys.push(&key);
                    upserts.push(PlannedRow {
                        kind: ChangeKind::Insert,
                        row_hash: 0,
                    });
                }
            }
        }
    }

    /// Updates planned among the inserts are not new keys: the table gets the inserts'
    /// positions only.
    #[test]
    fn only_inserts_go_into_the_table() {
        let mut new_keys = NewKeys::default();
        let mut keys = KeyList::default();
        let mut upserts = Vec::new();
        for (key, kind) in [
            ("[2]", ChangeKind::Insert),
            ("[1]", ChangeKind::Update),
            ("[3]", ChangeKind::Insert),
        ] {
            if kind == ChangeKind::Insert {
                assert!(new_keys.is_first(key, &keys, &upserts));
                new_keys.planned(keys.len());
            }
            keys.push(key);
            upserts.push(PlannedRow { kind, row_hash: 0 });
        }
        // Out of order: the switch to the table.
        assert!(new_keys.is_first("[1]", &keys, &upserts));
        assert!(!new_keys.is_first("[2]", &keys, &upserts));
        assert!(!new_keys.is_first("[3]", &keys, &upserts));
    }
}

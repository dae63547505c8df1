//! The compact in-memory snapshot: every delivered key (its JSON text) with the hash of its
//! mapped row, at about 30 bytes per key for short keys (issue #6: at most 40).
//!
//! Layout: one byte arena holds the entries one after another, each
//! `[varint (key length << 1 | removed)][row hash, 8 bytes LE][key bytes]`; an open-addressing
//! table (linear probing, at most 3/4 full, a power of two) of `u64` slots points into it. A
//! slot is `(top 24 bits of the key's xxh3-64 hash) << 40 | (arena offset + 1)`, 0 when empty.
//!
//! Collision safety: a lookup compares the key text itself whenever the 24-bit tag matches, so
//! two keys never share an entry, whatever their hashes. Updating a row hash rewrites it in
//! place; removing a key marks its entry removed and empties its slot (backward-shift
//! deletion); the arena is compacted once removed entries take more than half of it.

use std::sync::OnceLock;

use xxhash_rust::xxh3::xxh3_64;

/// Where an entry starts in the arena: at most 2^40 - 2 bytes (1 TiB) of keys.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Row hash bytes per entry.
const ROW_HASH_LEN: usize = 8;

#[derive(Clone, Default)]
pub struct Snapshot {
    /// The table, built on first use: a snapshot loaded from a file and then read in the
    /// order its keys were delivered is walked through the arena and never needs it.
    table: OnceLock<Vec<u64>>,
    arena: Vec<u8>,
    len: usize,
    /// Bytes of removed entries still in the arena.
    dead_bytes: usize,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|(k, h)| other.get(k) == Some(h))
    }
}

/// An entry's place in the table, valid until the snapshot changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// An entry's place in the arena (its offset), valid until the snapshot changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryPos(usize);

/// An entry [`Snapshot::locate`] found: where it is and its row hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    pub pos: EntryPos,
    pub row_hash: u64,
    /// Where the entry ends in the arena.
    end: usize,
}

/// `a == b`, without a call to `memcmp` for 4 to 16 bytes (most keys: an id in brackets): the
/// first and the last 4 or 8 bytes compared as two fixed-size words that overlap.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    #[inline(always)]
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        a.first_chunk::<N>() == b.first_chunk::<N>() && a.last_chunk::<N>() == b.last_chunk::<N>()
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        4..8 => ends::<4>(a, b),
        8..=16 => ends::<8>(a, b),
        _ => a == b,
    }
}

/// The shortest entry: a one-byte header, the row hash and a key of at least one byte.
const MIN_ENTRY_LEN: usize = 1 + ROW_HASH_LEN + 1;

impl EntryPos {
    /// A number for the entry, for a bitmap of entries: distinct entries have distinct
    /// indexes below [`Snapshot::index_bound`] (entries start at least `MIN_ENTRY_LEN`
    /// bytes apart).
    pub fn index(self) -> usize {
        self.0 / MIN_ENTRY_LEN
    }
}

fn tag_of(hash: u64) -> u64 {
    hash >> OFFSET_BITS
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// (value, bytes read)
fn read_varint(bytes: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, bytes.len())
}

/// An entry decoded from the arena.
struct Entry<'a> {
    key: &'a str,
    row_hash: u64,
    removed: bool,
    /// Where the row hash is, and the entry's whole length.
    row_hash_at: usize,
    len: usize,
}

impl Snapshot {
    /// A snapshot with room for `n` keys of about `key_bytes` bytes each without growing.
    pub fn with_capacity(n: usize, key_bytes: usize) -> Self {
        let mut s = Self::default();
        s.reserve(n, key_bytes);
        s
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held (table and arena), for the benchmark's bytes per key.
    pub fn heap_bytes(&self) -> usize {
        self.table.get().map_or(0, Vec::capacity) * 8 + self.arena.capacity()
    }

    /// Makes room for `more` keys of about `key_bytes` bytes each.
    pub fn reserve(&mut self, more: usize, key_bytes: usize) {
        let wanted = self.len + more;
        if self.table.get().is_some_and(|t| wanted * 4 > t.len() * 3) {
            self.rebuild_table(wanted);
        }
        self.arena.reserve(more * (key_bytes + ROW_HASH_LEN + 1));
    }

    /// Frees the arena's unused capacity (after a load).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
    }

    fn entry_at(&self, offset: usize) -> Entry<'_> {
        let (header, n) = read_varint(&self.arena[offset..]);
        let key_len = (header >> 1) as usize;
        let row_hash_at = offset + n;
        let key_at = row_hash_at + ROW_HASH_LEN;
        let mut row_hash = [0u8; ROW_HASH_LEN];
        row_hash.copy_from_slice(&self.arena[row_hash_at..key_at]);
        let key = std::str::from_utf8(&self.arena[key_at..key_at + key_len]).unwrap_or_default();
        Entry {
            key,
            row_hash: u64::from_le_bytes(row_hash),
            removed: header & 1 == 1,
            row_hash_at,
            len: n + ROW_HASH_LEN + key_len,
        }
    }

    /// The key of the entry at `offset`, as bytes (a lookup compares them without decoding).
    fn key_bytes_at(&self, offset: usize) -> &[u8] {
        self.located_at(EntryPos(offset)).0
    }

    fn offset_of(slot: u64) -> usize {
        ((slot & OFFSET_MASK) - 1) as usize
    }

    fn mask(&self) -> usize {
        self.slots().len().wrapping_sub(1)
    }

    /// The slot holding `key`, if present.
    pub fn find(&self, key: &str) -> Option<Slot> {
        self.find_hashed(key, xxh3_64(key.as_bytes()))
    }

    fn find_hashed(&self, key: &str, hash: u64) -> Option<Slot> {
        if self.len == 0 {
            // Nothing to find: no table is built for it.
            return None;
        }
        let slots = self.slots();
        let mask = self.mask();
        let tag = tag_of(hash);
        let mut i = hash as usize & mask;
        loop {
            let slot = slots[i];
            if slot == 0 {
                return None;
            }
            if slot >> OFFSET_BITS == tag
                && same_bytes(self.key_bytes_at(Self::offset_of(slot)), key.as_bytes())
            {
                return Some(Slot(i));
            }
            i = (i + 1) & mask;
        }
    }

    /// The key and row hash at a slot found by [`Snapshot::find`].
    pub fn at(&self, slot: Slot) -> (&str, u64) {
        let e = self.entry_at(Self::offset_of(self.slots()[slot.0]));
        (e.key, e.row_hash)
    }

    /// Every entry's [`EntryPos::index`] is below this.
    pub fn index_bound(&self) -> usize {
        self.arena.len().div_ceil(MIN_ENTRY_LEN)
    }

    /// The first live entry at or after arena offset `offset`.
    fn live_from(&self, mut offset: usize) -> Option<EntryPos> {
        while offset < self.arena.len() {
            let (header, n) = read_varint(&self.arena[offset..]);
            if header & 1 == 0 {
                return Some(EntryPos(offset));
            }
            offset += n + ROW_HASH_LEN + (header >> 1) as usize;
        }
        None
    }

    /// The first live entry, in insertion order.
    pub fn first_entry(&self) -> Option<EntryPos> {
        self.live_from(0)
    }

    /// The live entry after `pos`, in insertion order.
    pub fn entry_after(&self, pos: EntryPos) -> Option<EntryPos> {
        let (header, n) = read_varint(&self.arena[pos.0..]);
        self.live_from(pos.0 + n + ROW_HASH_LEN + (header >> 1) as usize)
    }

    /// Where `key`'s entry is, with its row hash. When the entry at `expected` holds `key`,
    /// that is the answer without a hash or a table probe: reading the model in the order its
    /// keys were first delivered walks the arena in order (no cache miss a row); otherwise the
    /// table is asked. The entry is decoded once for its key, its row hash and its end.
    pub fn locate(&self, key: &str, expected: Option<EntryPos>) -> Option<Located> {
        if let Some(pos) = expected {
            let (key_bytes, found) = self.located_at(pos);
            if same_bytes(key_bytes, key.as_bytes()) {
                return Some(found);
            }
        }
        self.find(key).map(|slot| {
            self.located_at(EntryPos(Self::offset_of(self.slots()[slot.0])))
                .1
        })
    }

    /// The entry at `pos`: its key's bytes, and it as [`Located`].
    fn located_at(&self, pos: EntryPos) -> (&[u8], Located) {
        let (header, n) = read_varint(&self.arena[pos.0..]);
        let row_hash_at = pos.0 + n;
        let key_at = row_hash_at + ROW_HASH_LEN;
        let end = key_at + (header >> 1) as usize;
        let mut row_hash = [0u8; ROW_HASH_LEN];
        row_hash.copy_from_slice(&self.arena[row_hash_at..key_at]);
        let found = Located {
            pos,
            row_hash: u64::from_le_bytes(row_hash),
            end,
        };
        (&self.arena[key_at..end], found)
    }

    /// The live entry after a located one, in insertion order.
    pub fn live_after(&self, found: Located) -> Option<EntryPos> {
        self.live_from(found.end)
    }

    /// Every live entry's position and key, in insertion order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryPos, &str)> + '_ {
        self.positions().map(|pos| (pos, self.key_at(pos)))
    }

    /// Every live entry's position, in insertion order (no key decoded: a mirror's diff
    /// asks for the keys of the entries not read only).
    pub fn positions(&self) -> impl Iterator<Item = EntryPos> + '_ {
        let mut next = self.first_entry();
        std::iter::from_fn(move || {
            let pos = next?;
            next = self.entry_after(pos);
            Some(pos)
        })
    }

    /// The key of the live entry at `pos`.
    pub fn key_at(&self, pos: EntryPos) -> &str {
        self.entry_at(pos.0).key
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.find(key).map(|s| self.at(s).1)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// Every key with its row hash, in the order they were first inserted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        let mut offset = 0;
        std::iter::from_fn(move || {
            while offset < self.arena.len() {
                let e = self.entry_at(offset);
                offset += e.len;
                if !e.removed {
                    return Some((e.key, e.row_hash));
                }
            }
            None
        })
    }

    pub fn insert(&mut self, key: &str, row_hash: u64) {
        debug_assert!(!key.is_empty(), "entries are at least MIN_ENTRY_LEN bytes");
        let hash = xxh3_64(key.as_bytes());
        if let Some(Slot(i)) = self.find_hashed(key, hash) {
            let at = self.entry_at(Self::offset_of(self.slots()[i])).row_hash_at;
            self.arena[at..at + ROW_HASH_LEN].copy_from_slice(&row_hash.to_le_bytes());
            return;
        }
        if (self.len + 1) * 4 > self.slots().len() * 3 {
            self.rebuild_table(self.len + 1);
        }
        let offset = self.arena.len();
        write_varint(&mut self.arena, (key.len() as u64) << 1);
        self.arena.extend_from_slice(&row_hash.to_le_bytes());
        self.arena.extend_from_slice(key.as_bytes());
        place(self.slots_mut(), hash, offset);
        self.len += 1;
    }

    pub fn remove(&mut self, key: &str) -> bool {
        let Some(Slot(mut hole)) = self.find(key) else {
            return false;
        };
        let offset = Self::offset_of(self.slots()[hole]);
        let e = self.entry_at(offset);
        let entry_len = e.len;
        // Mark the entry removed: the header's low bit is the first byte's low bit.
        self.arena[offset] |= 1;
        self.dead_bytes += entry_len;
        self.len -= 1;
        // Backward-shift deletion: move later entries of the run into the hole when their
        // home position allows it, so lookups never stop at a false empty slot.
        let mask = self.mask();
        let arena = &self.arena;
        let slots = self.table.get_mut().expect("built by the find above");
        slots[hole] = 0;
        let mut i = (hole + 1) & mask;
        while slots[i] != 0 {
            let slot = slots[i];
            let (header, n) = read_varint(&arena[Self::offset_of(slot)..]);
            let key_at = Self::offset_of(slot) + n + ROW_HASH_LEN;
            let home = xxh3_64(&arena[key_at..key_at + (header >> 1) as usize]) as usize & mask;
            // Moves when `home` is not cyclically in (hole, i].
            let distance_to_i = i.wrapping_sub(home) & mask;
            let distance_to_hole = hole.wrapping_sub(home) & mask;
            if distance_to_hole < distance_to_i {
                slots[hole] = slot;
                slots[i] = 0;
                hole = i;
            }
            i = (i + 1) & mask;
        }
        if self.dead_bytes > 4096 && self.dead_bytes * 2 > self.arena.len() {
            self.compact();
        }
        true
    }

    /// The table, built from the arena if it was not yet.
    fn slots(&self) -> &[u64] {
        self.table
            .get_or_init(|| build_table(&self.arena, self.len))
    }

    fn slots_mut(&mut self) -> &mut Vec<u64> {
        self.slots();
        self.table.get_mut().expect("built just above")
    }

    /// A new table for at least `keys` keys, at most 3/4 full, from the arena's live entries.
    fn rebuild_table(&mut self, keys: usize) {
        self.table = OnceLock::from(build_table(&self.arena, keys));
    }

    /// Adds an entry whose key is known not to be present (a snapshot file's entry, written
    /// from a snapshot; a key the plan found new to the state): no lookup, and the table is
    /// left to be built when first needed. Once the table exists this is
    /// [`Snapshot::insert`].
    pub fn push_new(&mut self, key: &str, row_hash: u64) {
        debug_assert!(!key.is_empty(), "entries are at least MIN_ENTRY_LEN bytes");
        if self.table.get().is_some() {
            return self.insert(key, row_hash);
        }

        write_varint(&mut self.arena, (key.len() as u64) << 1);
        self.arena.extend_from_slice(&row_hash.to_le_bytes());
        self.arena.extend_from_slice(key.as_bytes());
        self.len += 1;
    }

    /// Drops removed entries from the arena.
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.arena);
        let mut offset = 0;
        while offset < old.len() {
            let (header, n) = read_varint(&old[offset..]);
            let len = n + ROW_HASH_LEN + (header >> 1) as usize;
            if header & 1 == 0 {
                self.arena.extend_from_slice(&old[offset..offset + len]);
            }
            offset += len;
        }
        self.dead_bytes = 0;
        self.rebuild_table(self.len);
    }
}

/// Puts an entry's slot at the first free position from its home.
fn place(slots: &mut [u64], hash: u64, offset: usize) {
    let mask = slots.len() - 1;
    let mut i = hash as usize & mask;
    while slots[i] != 0 {
        i = (i + 1) & mask;
    }
    slots[i] = (tag_of(hash) << OFFSET_BITS) | (offset as u64 + 1);
}

/// A table for at least `keys` keys, at most 3/4 full, over the arena's live entries.
fn build_table(arena: &[u8], keys: usize) -> Vec<u64> {
    let size = (keys * 4 / 3 + 1).next_power_of_two().max(16);
    let mut slots = vec![0; size];
    let mut offset = 0;
    while offset < arena.len() {
        let (header, n) = read_varint(&arena[offset..]);
        let key_at = offset + n + ROW_HASH_LEN;
        let key_len = (header >> 1) as usize;
        if header & 1 == 0 {
            place(
                &mut slots,
                xxh3_64(&arena[key_at..key_at + key_len]),
                offset,
            );
        }
        offset = key_at + key_len;
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_update_remove_and_iterate() {
        let mut s = Snapshot::default();
        for i in 0..1000 {
            s.insert(&format!("[{i}]"), i);
        }
        assert_eq!(s.len(), 1000);
        s.insert("[5]", 55);
        assert_eq!(s.len(), 1000);
        assert_eq!(s.get("[5]"), Some(55));
        for i in (0..1000).step_by(3) {
            assert!(s.remove(&format!("[{i}]")));
        }
        assert!(!s.remove("[0]"));
        for i in 0..1000u64 {
            let want = (i % 3 != 0).then_some(if i == 5 { 55 } else { i });
            assert_eq!(s.get(&format!("[{i}]")), want, "{i}");
        }
        assert_eq!(s.iter().count(), s.len());
        assert_eq!(s.entries().count(), s.len());
        // Removing most keys compacts the arena; every remaining key is still found.
        for i in 0..990 {
            s.remove(&format!("[{i}]"));
        }
        // Left: 990 to 999 but the multiples of 3 removed before.
        assert_eq!(s.len(), 6);
        assert!(s.arena.len() < 5_000, "{}", s.arena.len());
        for i in (990..1000).filter(|i| i % 3 != 0) {
            assert_eq!(s.get(&format!("[{i}]")), Some(i), "{i}");
        }
        s.insert("[\"é, long key with unicode and more than 128 bytes ......................................................................................\"]", 1);
        assert_eq!(s.iter().last().map(|(_, h)| h), Some(1));
    }

    /// Random inserts, updates and removals over a small key space (so runs of probes,
    /// backward shifts, growth and compaction all happen) agree with a `HashMap`.
    #[test]
    fn agrees_with_a_hash_map_under_random_changes() {
        let mut model = std::collections::HashMap::new();
        let mut s = Snapshot::default();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..200_000u64 {
            let r = next();
            let key = format!("[{}]", r % 3_000);
            if r % 5 < 2 {
                assert_eq!(s.remove(&key), model.remove(&key).is_some(), "{step}");
            } else {
                s.insert(&key, step);
                model.insert(key, step);
            }
            if step % 20_000 == 0 {
                assert_eq!(s.len(), model.len());
                for (k, h) in &model {
                    assert_eq!(s.get(k), Some(*h), "{k} at {step}");
                }
                assert_eq!(s.iter().count(), model.len());
            }
        }
        for i in 0..3_000 {
            let key = format!("[{i}]");
            assert_eq!(s.get(&key), model.get(&key).copied(), "{key}");
        }
    }

    #[test]
    fn keys_whose_hashes_collide_stay_apart() {
        // Two keys with the same tag and home still differ by their text: force it by placing
        // entries with one hash by hand.
        let mut s = Snapshot::default();
        s.rebuild_table(4);
        for (key, row_hash) in [("[\"a\"]", 1u64), ("[\"b\"]", 2)] {
            let offset = s.arena.len();
            write_varint(&mut s.arena, (key.len() as u64) << 1);
            s.arena.extend_from_slice(&row_hash.to_le_bytes());
            s.arena.extend_from_slice(key.as_bytes());
            place(s.slots_mut(), 42, offset);
            s.len += 1;
        }
        assert_eq!(s.find_hashed("[\"a\"]", 42).map(|x| s.at(x).1), Some(1));
        assert_eq!(s.find_hashed("[\"b\"]", 42).map(|x| s.at(x).1), Some(2));
        assert_eq!(s.find_hashed("[\"c\"]", 42), None);
    }

    #[test]
    fn equality_ignores_insertion_order() {
        let mut a = Snapshot::default();
        let mut b = Snapshot::default();
        a.insert("[1]", 1);
        a.insert("[2]", 2);
        b.insert("[2]", 2);
        b.insert("[1]", 1);
        assert_eq!(a, b);
        b.insert("[1]", 3);
        assert_ne!(a, b);
    }

    /// Equal exactly when the bytes are: every length from 0 to 40, a difference at every
    /// place, and lengths that differ.
    #[test]
    fn same_bytes_is_slice_equality() {
        let a: Vec<u8> = (1..=40).collect();
        for len in 0..=a.len() {
            let x = &a[..len];
            assert!(same_bytes(x, &a[..len]));
            for place in 0..len {
                let mut y = x.to_vec();
                y[place] ^= 0x20;
                assert!(!same_bytes(x, &y), "{len} bytes, differing at {place}");
            }
            if len > 0 {
                assert!(!same_bytes(x, &a[..len - 1]));
            }
        }
    }

    /// `locate` finds a key at the expected position or through the table; `entries` and
    /// `entry_after` walk the live entries in insertion order; indexes are distinct.
    #[test]
    fn entries_are_located_in_order_or_through_the_table() {
        let mut s = Snapshot::default();
        for i in 0..1000 {
            s.insert(&format!("[{i}]"), i);
        }
        for i in (0..1000).step_by(3) {
            s.remove(&format!("[{i}]"));
        }
        let walked: Vec<&str> = s.entries().map(|(_, k)| k).collect();
        let iterated: Vec<&str> = s.iter().map(|(k, _)| k).collect();
        assert_eq!(walked, iterated);
        let mut expected = s.first_entry();
        let mut indexes = std::collections::HashSet::new();
        for (key, row_hash) in s.iter().map(|(k, h)| (k.to_owned(), h)).collect::<Vec<_>>() {
            let found = s.locate(&key, expected).expect("present");
            let at = found.pos;
            assert_eq!(Some(at), expected, "in order: found where expected");
            assert_eq!(found.row_hash, row_hash);
            assert!(at.index() < s.index_bound());
            assert!(indexes.insert(at.index()));
            expected = s.live_after(found);
            assert_eq!(expected, s.entry_after(at));
        }
        assert_eq!(expected, None);
        let somewhere = s.first_entry();
        assert_eq!(
            s.locate("[998]", somewhere).map(|found| found.row_hash),
            Some(998)
        );
        assert_eq!(s.locate("[3]", somewhere), None, "removed");
        assert_eq!(s.locate("[5000]", None), None);
    }

    /// Entries pushed as loaded are found in order without a table; the first lookup
    /// elsewhere builds it, and later changes keep it right.
    #[test]
    fn a_loaded_snapshot_builds_its_table_only_when_asked() {
        let mut s = Snapshot::default();
        assert_eq!(s.get("[1]"), None);
        assert!(
            s.table.get().is_none(),
            "an empty snapshot builds no table to answer"
        );
        for i in 0..500 {
            s.push_new(&format!("[{i}]"), i);
        }
        assert_eq!(s.len(), 500);
        let mut expected = s.first_entry();
        for i in 0..500u64 {
            let found = s.locate(&format!("[{i}]"), expected).expect("in order");
            assert_eq!(found.row_hash, i);
            expected = s.live_after(found);
        }
        assert!(s.table.get().is_none(), "walked in order: no table built");
        assert_eq!(Snapshot::default().locate("[1]", None), None);
        assert_eq!(s.get("[250]"), Some(250));
        assert!(s.table.get().is_some());
        s.push_new("[1000]", 7);
        s.insert("[250]", 9);
        assert!(s.remove("[3]"));
        assert_eq!(
            (s.get("[1000]"), s.get("[250]"), s.get("[3]")),
            (Some(7), Some(9), None)
        );
        assert_eq!(s.len(), 500);
    }
}

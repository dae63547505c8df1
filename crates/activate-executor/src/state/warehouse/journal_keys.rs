//! The warehouse form and source hash of every key a sync may confirm, kept from the diff
//! until the destination confirms the key and the journal records it. A first run keeps one
//! entry per model row, so the entries share one text arena and a table of positions: about
//! 24 bytes a key plus its text, against some 200 for a map of owned strings.

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

/// `hash_len` of an entry without a source hash (a removal).
const NO_HASH: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the key's text starts in the arena: `key_json`, then `wh_key`, then the hash.
    start: usize,
    key_len: u32,
    wh_len: u32,
    hash_len: u32,
}

#[derive(Default)]
pub struct JournalKeys {
    text: String,
    entries: Vec<Entry>,
    /// Positions in `entries`, found by the hash of the key's JSON, compared by its text.
    index: HashTable<u32>,
}

fn key_of<'t>(text: &'t str, entry: &Entry) -> &'t str {
    &text[entry.start..entry.start + entry.key_len as usize]
}

fn hash_key(key_json: &str) -> u64 {
    xxh3_64(key_json.as_bytes())
}

impl JournalKeys {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key's warehouse form and source hash (`None` for a removal).
    pub fn get(&self, key_json: &str) -> Option<(&str, Option<&str>)> {
        let at = *self.index.find(hash_key(key_json), |&i| {
            key_of(&self.text, &self.entries[i as usize]) == key_json
        })?;
        let e = self.entries[at as usize];
        let wh_start = e.start + e.key_len as usize;
        let hash_start = wh_start + e.wh_len as usize;
        let wh_key = &self.text[wh_start..hash_start];
        let source_hash = (e.hash_len != NO_HASH)
            .then(|| &self.text[hash_start..hash_start + e.hash_len as usize]);
        Some((wh_key, source_hash))
    }

    /// Sets a key's entry, replacing what it held.
    pub fn insert(&mut self, key_json: &str, wh_key: &str, source_hash: Option<&str>) {
        self.put(key_json, wh_key, source_hash, true);
    }

    /// Adds a key's entry unless it has one.
    pub fn insert_if_absent(&mut self, key_json: &str, wh_key: &str, source_hash: Option<&str>) {
        self.put(key_json, wh_key, source_hash, false);
    }

    fn put(&mut self, key_json: &str, wh_key: &str, source_hash: Option<&str>, replace: bool) {
        let hash = hash_key(key_json);
        let Self {
            text,
            entries,
            index,
        } = self;
        let found = index
            .find(hash, |&i| key_of(text, &entries[i as usize]) == key_json)
            .copied();
        if found.is_some() && !replace {
            return;
        }
        let entry = Entry {
            start: text.len(),
            key_len: len_u32(key_json),
            wh_len: len_u32(wh_key),
            hash_len: source_hash.map_or(NO_HASH, len_u32),
        };
        text.push_str(key_json);
        text.push_str(wh_key);
        text.push_str(source_hash.unwrap_or(""));
        match found {
            // The old text stays in the arena: a key read twice fails its sync anyway.
            Some(at) => entries[at as usize] = entry,
            None => {
                let at = u32::try_from(entries.len()).expect("fewer than 4 billion keys a sync");
                entries.push(entry);
                index.insert_unique(hash, at, |&i| hash_key(key_of(text, &entries[i as usize])));
            }
        }
    }
}

fn len_u32(text: &str) -> u32 {
    u32::try_from(text.len())
        .ok()
        .filter(|&n| n != NO_HASH)
        .expect("a key or hash shorter than 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_their_text_and_replaced_or_kept() {
        let mut keys = JournalKeys::default();
        for i in 0..10_000 {
            keys.insert(&format!("[{i}]"), &i.to_string(), Some(&format!("h{i}")));
        }
        keys.insert("[\"a\",null]", "{\"c0\":\"a\",\"c1\":null}", None);
        assert_eq!(keys.len(), 10_001);
        assert_eq!(keys.get("[42]"), Some(("42", Some("h42"))));
        assert_eq!(
            keys.get("[\"a\",null]"),
            Some(("{\"c0\":\"a\",\"c1\":null}", None))
        );
        assert_eq!(keys.get("[10000]"), None);
        keys.insert_if_absent("[42]", "x", None);
        assert_eq!(keys.get("[42]"), Some(("42", Some("h42"))));
        keys.insert("[42]", "42", Some("new"));
        assert_eq!(keys.get("[42]"), Some(("42", Some("new"))));
        assert_eq!(keys.len(), 10_001);
        keys.insert("[\"\"]", "", Some(""));
        assert_eq!(keys.get("[\"\"]"), Some(("", Some(""))));
    }
}

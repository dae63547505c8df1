//! The keys of a plan's upserts (each a JSON array of the key values), one after another in
//! one string: a planned row costs its key's bytes and one offset, not a heap allocation.

#[derive(Debug, Default, Clone)]
pub struct KeyList {
    text: String,
    /// Where each key ends in `text`.
    ends: Vec<usize>,
}

impl KeyList {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn push(&mut self, key: &str) {
        self.text.push_str(key);
        self.ends.push(self.text.len());
    }

    /// The key at `index`.
    pub fn get(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text[start..self.ends[index]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Keeps the keys whose index `keep` accepts, in order.
    pub fn retain_indices(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let old = std::mem::take(self);
        for (i, key) in old.iter().enumerate() {
            if keep(i) {
                self.push(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_back_in_order_and_survive_retain() {
        let mut keys = KeyList::default();
        for k in ["[1]", "[\"é\",2]", "[]", "[3]"] {
            keys.push(k);
        }
        assert_eq!(keys.len(), 4);
        assert_eq!(keys.get(1), "[\"é\",2]");
        assert_eq!(keys.get(2), "[]");
        keys.retain_indices(|i| i % 2 == 1);
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec!["[\"é\",2]", "[3]"]);
    }
}

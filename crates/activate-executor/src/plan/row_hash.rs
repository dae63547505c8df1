//! The bytes a row hash is computed over, built for every row read (issue #6): for each
//! mapped field in name order, its name, a zero byte, and its value's tagged encoding
//! ([`Value::write_hash_bytes`], which defines the bytes; they are stored in users' state and
//! never change).
//!
//! They are written at an index into a buffer kept longer than any row's bytes, so a piece is
//! one or two fixed-size copies with a bounds check, not a `Vec` append (a capacity check and
//! a length update each) or a call to `memcpy`. Writing them through `Vec` appends was about
//! half of the instructions of the diff of an unchanged row (`callgrind`, docs/performance.md).

use crate::value::{Value, hash_tag, put_short};

/// Text up to this long is written with its tag and length through one window.
const SHORT: usize = 32;

/// Bytes written through one window: a padded name, or a tag, 8 bytes and [`SHORT`] bytes.
const WINDOW: usize = 48;

/// Names up to this long with their zero byte are copied as one padded block.
const NAME_BLOCK: usize = 32;

/// A field's name as the row hash has it: the name and a zero byte.
pub(super) struct HashedName {
    /// The name and the zero byte, padded with zeros to [`NAME_BLOCK`] bytes (a name that fits).
    block: Option<[u8; NAME_BLOCK]>,
    bytes: Box<[u8]>,
}

impl HashedName {
    pub(super) fn new(name: &str) -> Self {
        let bytes: Box<[u8]> = [name.as_bytes(), &[0]].concat().into();
        let block = (bytes.len() <= NAME_BLOCK).then(|| {
            let mut block = [0; NAME_BLOCK];
            block[..bytes.len()].copy_from_slice(&bytes);
            block
        });
        Self { block, bytes }
    }
}

/// One row's hash bytes (the buffer is reused from row to row).
#[derive(Default)]
pub(super) struct RowHashBytes {
    /// The bytes written and room past them (its length is not the row's: `len` is).
    buf: Vec<u8>,
    len: usize,
}

impl RowHashBytes {
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Makes sure `n` more bytes fit.
    #[inline(always)]
    fn room(&mut self, n: usize) {
        if self.len + n > self.buf.len() {
            self.grow(n);
        }
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        let want = (self.len + n).next_power_of_two().max(512);
        self.buf.resize(want, 0);
    }

    /// The next [`WINDOW`] bytes of the buffer (grown when they do not exist): one bounds
    /// check for all the writes of a name or a value, at offsets the compiler checks.
    #[inline(always)]
    fn window(&mut self) -> &mut [u8; WINDOW] {
        self.room(WINDOW);
        match self.buf[self.len..].first_chunk_mut::<WINDOW>() {
            Some(window) => window,
            None => unreachable!("the buffer was grown for a window"),
        }
    }

    #[inline(always)]
    pub(super) fn name(&mut self, name: &HashedName) {
        match &name.block {
            Some(block) => self.window()[..NAME_BLOCK].copy_from_slice(block),
            None => {
                self.room(name.bytes.len());
                put_short(&mut self.buf, self.len, &name.bytes);
            }
        }
        self.len += name.bytes.len();
    }

    /// The value's tagged encoding, as [`Value::write_hash_bytes`] appends it.
    #[inline(always)]
    pub(super) fn value(&mut self, value: &Value) {
        match value {
            Value::Null => {
                self.window()[0] = hash_tag::NULL;
                self.len += 1;
            }
            Value::Bool(b) => {
                let window = self.window();
                window[0] = hash_tag::BOOL;
                window[1] = u8::from(*b);
                self.len += 2;
            }
            Value::Int(i) => self.tagged(hash_tag::INT, i.to_le_bytes()),
            Value::Number(s) => self.tagged_bytes(hash_tag::NUMBER, s.as_bytes()),
            Value::Float(f) => self.tagged(hash_tag::FLOAT, f.to_bits().to_le_bytes()),
            Value::Text(s) => self.tagged_bytes(hash_tag::TEXT, s.as_bytes()),
            Value::Date(s) => self.tagged_bytes(hash_tag::DATE, s.as_bytes()),
            Value::Timestamp(s) => self.tagged_bytes(hash_tag::TIMESTAMP, s.as_bytes()),
            Value::TimestampTz(s) => self.tagged_bytes(hash_tag::TIMESTAMP_TZ, s.as_bytes()),
            Value::Json(_) | Value::Blob(_) => self.appended(value),
        }
    }

    /// The tag and 8 bytes.
    #[inline(always)]
    fn tagged(&mut self, tag: u8, eight: [u8; 8]) {
        let window = self.window();
        window[0] = tag;
        window[1..9].copy_from_slice(&eight);
        self.len += 9;
    }

    /// The tag, the length as 8 bytes, and the bytes (up to [`SHORT`] of them through the
    /// same window).
    #[inline(always)]
    fn tagged_bytes(&mut self, tag: u8, bytes: &[u8]) {
        let n = bytes.len();
        if n > SHORT {
            self.tagged(tag, (n as u64).to_le_bytes());
            self.room(n);
            put_short(&mut self.buf, self.len, bytes);
            self.len += n;
            return;
        }
        let window = self.window();
        window[0] = tag;
        window[1..9].copy_from_slice(&(n as u64).to_le_bytes());
        put_short(&mut window[9..9 + n], 0, bytes);
        self.len += 9 + n;
    }

    /// A rare kind, through the defining encoding.
    #[cold]
    fn appended(&mut self, value: &Value) {
        let mut bytes = Vec::new();
        value.write_hash_bytes(&mut bytes);
        self.room(bytes.len());
        put_short(&mut self.buf, self.len, &bytes);
        self.len += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defining bytes: names and values appended as `write_hash_bytes` appends them.
    fn defined(fields: &[(String, Value)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            value.write_hash_bytes(&mut out);
        }
        out
    }

    fn written(bytes: &mut RowHashBytes, fields: &[(String, Value)]) -> Vec<u8> {
        bytes.clear();
        for (name, value) in fields {
            bytes.name(&HashedName::new(name));
            bytes.value(value);
        }
        bytes.as_bytes().to_vec()
    }

    fn text_of(len: usize, seed: usize) -> String {
        (0..len)
            .map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8))
            .collect()
    }

    /// Every value kind, and text of every length from 0 to 80 (each copy form and the
    /// plain copy), names from 0 to 40 bytes (the padded block and the long form), at every
    /// offset a row reaches, over a buffer reused from longer rows.
    #[test]
    fn written_bytes_are_the_defined_bytes() {
        let mut bytes = RowHashBytes::default();
        let kinds = |s: String| {
            vec![
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Int(-7),
                Value::Float(0.25),
                Value::Number(s.clone()),
                Value::Text(s.clone()),
                Value::Date(s.clone()),
                Value::Timestamp(s.clone()),
                Value::TimestampTz(s.clone()),
                Value::Blob(s.clone().into_bytes()),
                Value::json(serde_json::json!({"k": s})),
            ]
        };
        for len in 0..=80 {
            let fields: Vec<(String, Value)> = kinds(text_of(len, len))
                .into_iter()
                .enumerate()
                .map(|(i, v)| (text_of((len + i * 3) % 41, i), v))
                .collect();
            assert_eq!(
                written(&mut bytes, &fields),
                defined(&fields),
                "text of {len}"
            );
            // A short row after a long one: nothing of the long one is left.
            let short = &fields[..1];
            assert_eq!(written(&mut bytes, short), defined(short));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_row_is_written_as_defined(
            fields in proptest::collection::vec(("[a-z_]{0,40}", "\\PC{0,70}", 0u8..4), 0..12)
        ) {
            let fields: Vec<(String, Value)> = fields
                .into_iter()
                .map(|(name, text, kind)| {
                    let value = match kind {
                        0 => Value::Text(text),
                        1 => Value::Int(text.len() as i64 - 30),
                        2 => Value::Null,
                        _ => Value::TimestampTz(text),
                    };
                    (name, value)
                })
                .collect();
            let mut bytes = RowHashBytes::default();
            proptest::prop_assert_eq!(written(&mut bytes, &fields), defined(&fields));
        }
    }
}

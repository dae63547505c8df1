//! The records of a plan, encoded one after another in chunks of bytes and decoded a batch at
//! a time as they are sent. The plan stays whole (the breakers `max_changes`/`max_deletes` and
//! reviewed plans need its counts before anything is sent), but a record costs its encoded
//! bytes (about 110 for the benchmark's 7-column customer row) instead of a `Vec<Value>` with
//! a heap string per text value (about 400 bytes, and many allocations).
//!
//! Encoding of one value: a tag byte, then `Int`/`Float` as 8 bytes little-endian, `Bool` as
//! one byte, text-like values as a LEB128 length and their UTF-8 bytes, `Blob` as a length and
//! its bytes; `Json` values are kept aside as they are (their index in the arena), so they
//! come back exactly.

use std::ops::Range;

use crate::destination::Record;
use crate::value::Value;

#[derive(Debug, Default, Clone)]
pub struct Records {
    /// The encoded records, one after another, in chunks of about [`CHUNK_BYTES`]; a record
    /// never spans two chunks. Chunks rather than one growing buffer: a buffer of a million
    /// records is reallocated (copied) as it doubles, and each copy leaves the old buffer to
    /// the allocator, which keeps freed memory a while before it returns it (peak memory).
    chunks: Vec<Vec<u8>>,
    /// Where each chunk starts, counting the bytes of all chunks before it.
    chunk_starts: Vec<u64>,
    /// Where each record ends, counted the same way (a record starts where the one before
    /// it ends).
    ends: Vec<u64>,
    json: Vec<serde_json::Value>,
}

/// A new chunk is started for a record once the current one holds this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

const NULL: u8 = 0;
const BOOL: u8 = 1;
const INT: u8 = 2;
const NUMBER: u8 = 3;
const FLOAT: u8 = 4;
const TEXT: u8 = 5;
const DATE: u8 = 6;
const TIMESTAMP: u8 = 7;
const TIMESTAMP_TZ: u8 = 8;
const JSON: u8 = 9;
const BLOB: u8 = 10;

impl Records {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Appends a record of these values. They are written at an index into the chunk, which
    /// is first extended by zeros for them (fixed-size copies, no `Vec` append a piece: a
    /// first sync encodes every row read).
    pub fn push<'v>(&mut self, values: impl IntoIterator<Item = &'v Value>) {
        let end_before = self.ends.last().copied().unwrap_or(0);
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK_BYTES) {
            self.chunk_starts.push(end_before);
            // The first chunk grows as records come (most syncs send a few); the next ones
            // are made whole. A record that outgrows the slack reallocates its chunk only.
            let capacity = if self.chunks.is_empty() {
                4096
            } else {
                CHUNK_BYTES + CHUNK_BYTES / 8
            };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        let Some(out) = self.chunks.last_mut() else {
            unreachable!("a chunk was just made sure of")
        };
        let before = out.len();
        out.resize(before + RECORD_ROOM, 0);
        let mut at = before;
        for value in values {
            at = put_value(out, at, &mut self.json, value);
        }
        out.truncate(at);
        self.ends.push(end_before + (at - before) as u64);
    }

    /// The record at `index`.
    pub fn get(&self, index: usize) -> Record {
        let mut record = Record { values: Vec::new() };
        self.get_into(index, &mut record);
        record
    }

    /// The record at `index`, decoded over `record`: its values' strings are reused, so a
    /// batch decoded over the one before allocates (almost) nothing.
    fn get_into(&self, index: usize, record: &mut Record) {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        let end = self.ends[index];
        // The last chunk starting at or before the record (an empty record at a chunk's end
        // is found in the next chunk, as an empty range).
        let chunk = self.chunk_starts.partition_point(|&s| s <= start) - 1;
        let in_chunk = |at: u64| (at - self.chunk_starts[chunk]) as usize;
        let mut reader = Reader {
            bytes: &self.chunks[chunk][in_chunk(start)..in_chunk(end)],
            json: &self.json,
        };
        let values = &mut record.values;
        let mut n = 0;
        while !reader.bytes.is_empty() {
            match values.get_mut(n) {
                Some(slot) => reader.value_into(slot),
                None => values.push(reader.value()),
            }
            n += 1;
        }
        values.truncate(n);
    }

    /// The records in `range`, decoded over `batch` (the batch sent before), reusing its
    /// records and their strings.
    pub fn decode_into(&self, range: Range<usize>, batch: &mut Vec<Record>) {
        batch.truncate(range.len());
        for (n, i) in range.enumerate() {
            match batch.get_mut(n) {
                Some(record) => self.get_into(i, record),
                None => batch.push(self.get(i)),
            }
        }
    }

    /// Every record, decoded one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Keeps the records whose index `keep` accepts, in order.
    pub fn retain_indices(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let old = std::mem::take(self);
        for i in 0..old.len() {
            if keep(i) {
                self.push(&old.get(i).values);
            }
        }
    }
}

/// Bytes a chunk is extended by for a record (most records fit; a value that does not fit
/// extends it again).
const RECORD_ROOM: usize = 256;

/// Makes sure `buf[at..at + n]` exists.
#[inline(always)]
fn room(buf: &mut Vec<u8>, at: usize, n: usize) {
    if at + n > buf.len() {
        buf.resize(at + n + RECORD_ROOM, 0);
    }
}

/// Writes `v` as LEB128 at `buf[at..]`; returns where it ends.
fn put_varint(buf: &mut [u8], mut at: usize, mut v: usize) -> usize {
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
    at + 1
}

#[inline(always)]
fn put_bytes(buf: &mut [u8], at: usize, tag: u8, b: &[u8]) -> usize {
    buf[at] = tag;
    let at = put_varint(buf, at + 1, b.len());
    crate::value::put_short(buf, at, b);
    at + b.len()
}

#[inline(always)]
fn put_eight(buf: &mut [u8], at: usize, tag: u8, eight: [u8; 8]) -> usize {
    buf[at] = tag;
    buf[at + 1..at + 9].copy_from_slice(&eight);
    at + 9
}

/// Encodes one value at `buf[at..]`, extending `buf` when it is too short; returns where it
/// ends. A JSON value goes to `json`, its index to `buf`.
#[inline(always)]
fn put_value(
    buf: &mut Vec<u8>,
    at: usize,
    json: &mut Vec<serde_json::Value>,
    value: &Value,
) -> usize {
    /// A tag, a length (LEB128, at most 10 bytes) and the bytes.
    fn text(buf: &mut Vec<u8>, at: usize, tag: u8, b: &[u8]) -> usize {
        room(buf, at, 11 + b.len());
        put_bytes(buf, at, tag, b)
    }
    room(buf, at, 9);
    match value {
        Value::Null => {
            buf[at] = NULL;
            at + 1
        }
        Value::Bool(b) => {
            buf[at] = BOOL;
            buf[at + 1] = u8::from(*b);
            at + 2
        }
        Value::Int(i) => put_eight(buf, at, INT, i.to_le_bytes()),
        Value::Float(f) => put_eight(buf, at, FLOAT, f.to_bits().to_le_bytes()),
        Value::Number(s) => text(buf, at, NUMBER, s.as_bytes()),
        Value::Text(s) => text(buf, at, TEXT, s.as_bytes()),
        Value::Date(s) => text(buf, at, DATE, s.as_bytes()),
        Value::Timestamp(s) => text(buf, at, TIMESTAMP, s.as_bytes()),
        Value::TimestampTz(s) => text(buf, at, TIMESTAMP_TZ, s.as_bytes()),
        Value::Blob(b) => text(buf, at, BLOB, b),
        Value::Json(v) => {
            room(buf, at, 11);
            buf[at] = JSON;
            let end = put_varint(buf, at + 1, json.len());
            json.push((**v).clone());
            end
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    json: &'a [serde_json::Value],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        head
    }

    fn varint(&mut self) -> usize {
        let mut v = 0usize;
        let mut shift = 0;
        while let Some((&b, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            v |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    }

    fn eight(&mut self) -> [u8; 8] {
        let mut out = [0u8; 8];
        let b = self.take(8);
        out[..b.len()].copy_from_slice(b);
        out
    }

    /// Appends the text value at the reader to `out`.
    fn text_onto(&mut self, out: &mut String) {
        let n = self.varint();
        let bytes = self.take(n);
        // Written from a `str`: valid UTF-8 (checked, not trusted).
        match std::str::from_utf8(bytes) {
            Ok(text) => out.push_str(text),
            Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
        }
    }

    fn value(&mut self) -> Value {
        let mut value = Value::Null;
        self.value_into(&mut value);
        value
    }

    /// Decodes the value at the reader over `slot`, reusing the string it holds when it holds
    /// a text of the same kind.
    fn value_into(&mut self, slot: &mut Value) {
        let tag = self.take(1).first().copied().unwrap_or(NULL);
        // The common case: the slot holds the value of the same field of the record before,
        // of the same kind. It is overwritten in place (no value moved out, wrapped and
        // dropped).
        match (tag, &mut *slot) {
            (NUMBER, Value::Number(text))
            | (TEXT, Value::Text(text))
            | (DATE, Value::Date(text))
            | (TIMESTAMP, Value::Timestamp(text))
            | (TIMESTAMP_TZ, Value::TimestampTz(text)) => {
                text.clear();
                return self.text_onto(text);
            }
            (INT, Value::Int(i)) => return *i = i64::from_le_bytes(self.eight()),
            (FLOAT, Value::Float(f)) => {
                return *f = f64::from_bits(u64::from_le_bytes(self.eight()));
            }
            _ => {}
        }
        let text_kind: fn(String) -> Value = match tag {
            NUMBER => Value::Number,
            TEXT => Value::Text,
            DATE => Value::Date,
            TIMESTAMP => Value::Timestamp,
            TIMESTAMP_TZ => Value::TimestampTz,
            BOOL => return *slot = Value::Bool(self.take(1).first() == Some(&1)),
            INT => return *slot = Value::Int(i64::from_le_bytes(self.eight())),
            FLOAT => return *slot = Value::Float(f64::from_bits(u64::from_le_bytes(self.eight()))),
            BLOB => {
                let n = self.varint();
                return *slot = Value::Blob(self.take(n).to_vec());
            }
            JSON => {
                let i = self.varint();
                return *slot =
                    Value::json(self.json.get(i).cloned().unwrap_or(serde_json::Value::Null));
            }
            _ => return *slot = Value::Null,
        };
        // A slot of another kind (rare: a field whose kind changed between records, or the
        // first batch) gets a new string.
        let mut text = String::new();
        self.text_onto(&mut text);
        *slot = text_kind(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_value_comes_back_as_it_went_in() {
        let long = "é".repeat(200);
        let rows = vec![
            vec![
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Int(i64::MIN),
                Value::Float(f64::NAN),
                Value::Float(-0.0),
                Value::Number("12345678901234567890.5".into()),
            ],
            vec![],
            vec![
                Value::Text(long),
                Value::Text(String::new()),
                Value::Date("2024-02-29".into()),
                Value::Timestamp("2024-01-01T00:00:00.000000".into()),
                Value::TimestampTz("2024-01-01T00:00:00.000000Z".into()),
                Value::json(serde_json::json!({"a": [1.0000000000000002, null]})),
                Value::Blob(vec![0, 255]),
            ],
        ];
        let mut records = Records::default();
        for row in &rows {
            records.push(row);
        }
        assert_eq!(records.len(), 3);
        for (i, row) in rows.iter().enumerate() {
            let back = records.get(i).values;
            assert_eq!(back.len(), row.len());
            for (a, b) in back.iter().zip(row) {
                match (a, b) {
                    (Value::Float(x), Value::Float(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                    _ => assert_eq!(a, b),
                }
            }
        }
        let mut batch = Vec::new();
        records.decode_into(1..3, &mut batch);
        assert_eq!(batch.len(), 2);
        records.retain_indices(|i| i != 1);
        assert_eq!(records.len(), 2);
        assert_eq!(records.get(1).values.len(), 7);
    }

    #[test]
    fn records_come_back_across_chunks_of_every_size() {
        // Rows of 0 to 300 bytes of text, empty rows, and one row larger than a chunk: many
        // chunks, records ending exactly at a chunk's end, and empty records between chunks.
        let rows: Vec<Vec<Value>> = (0..40_000usize)
            .map(|i| match i % 7 {
                0 => vec![],
                _ if i == 12_345 => vec![Value::Text("x".repeat(3 * CHUNK_BYTES))],
                1 => vec![Value::Text("é".repeat(i % 150)), Value::Int(i as i64)],
                2 => vec![
                    Value::Date("2024-02-29".into()),
                    Value::Null,
                    Value::Timestamp("x".repeat(i % 40)),
                ],
                3 => vec![
                    Value::Number("12.5".into()),
                    Value::json(serde_json::json!([i])),
                    Value::Float(i as f64 / 3.0),
                ],
                _ => vec![
                    Value::Int(i as i64),
                    Value::Text("é".repeat(i % 150)),
                    Value::Float(-(i as f64)),
                ],
            })
            .collect();
        let mut records = Records::default();
        for row in &rows {
            records.push(row);
        }
        assert!(records.chunks.len() > 4, "{} chunks", records.chunks.len());
        assert!(records.chunks.iter().all(|c| c.len() < 5 * CHUNK_BYTES));
        assert_eq!(records.len(), rows.len());
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(&records.get(i).values, row, "record {i}");
        }
        // Decoded over the batch before, in batches of changing sizes: the same records (a
        // slot holding a value of the same kind is overwritten in place, of another kind
        // replaced).
        let mut batch = Vec::new();
        let mut first = 0;
        for size in [1000, 7, 0, 2500, 1, 999].iter().cycle() {
            if first >= rows.len() {
                break;
            }
            let range = first..(first + size).min(rows.len());
            records.decode_into(range.clone(), &mut batch);
            assert_eq!(batch.len(), range.len());
            for (record, i) in batch.iter().zip(range) {
                assert_eq!(&record.values, &rows[i], "record {i} decoded over another");
            }
            first += size;
        }
        let odd: Vec<usize> = (0..rows.len()).filter(|i| i % 2 == 1).collect();
        records.retain_indices(|i| i % 2 == 1);
        assert_eq!(records.len(), odd.len());
        for (n, i) in odd.iter().enumerate() {
            assert_eq!(&records.get(n).values, &rows[*i], "kept record {n}");
        }
    }
}

//! The one internal value type every warehouse produces and every destination consumes,
//! and its encodings (JSON, CSV/COPY text, hashing). See docs/values.md for the table.

use std::cmp::Ordering;
use std::fmt::Write as _;

use base64::Engine as _;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Exact decimal or out-of-range integer digits, e.g. `1250.50` or a HUGEINT: never a float.
    Number(String),
    Float(f64),
    Text(String),
    /// `YYYY-MM-DD`
    Date(String),
    /// `YYYY-MM-DDTHH:MM:SS.ffffff`, no zone.
    Timestamp(String),
    /// RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    TimestampTz(String),
    /// Lists, structs and maps, as JSON. Boxed: `serde_json::Value` (an ordered map) is 72
    /// bytes, and every value of every row would be that large (issue #6).
    Json(Box<serde_json::Value>),
    Blob(Vec<u8>),
}

impl Value {
    pub fn json(json: serde_json::Value) -> Self {
        Value::Json(Box::new(json))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Appends the JSON encoding of the value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => push_int(out, *i),
            Value::Number(digits) => out.push_str(digits),
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) | Value::TimestampTz(s) => {
                write_json_string(out, s)
            }
            Value::Json(v) => out.push_str(&v.to_string()),
            Value::Blob(b) => {
                write_json_string(out, &base64::engine::general_purpose::STANDARD.encode(b))
            }
        }
    }

    pub fn to_json_string(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The value as `serde_json::Value` (decimals keep their digits through a string parse).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Number(digits) => serde_json::from_str(digits)
                .unwrap_or_else(|_| serde_json::Value::String(digits.clone())),
            Value::Json(v) => (**v).clone(),
            other => {
                serde_json::from_str(&other.to_json_string()).unwrap_or(serde_json::Value::Null)
            }
        }
    }

    /// Text form for CSV cells and PostgreSQL COPY; `None` is NULL.
    /// The value as text, taking it (a text value is not copied); `None` for NULL.
    pub fn into_text(self) -> Option<String> {
        match self {
            Value::Text(t) => Some(t),
            other => other.to_text(),
        }
    }

    pub fn to_text(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Number(d) => Some(d.clone()),
            Value::Float(f) if f.is_nan() => Some("NaN".into()),
            Value::Float(f) if f.is_infinite() => {
                Some(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into())
            }
            Value::Float(f) => Some(f.to_string()),
            Value::Text(s) | Value::Date(s) | Value::Timestamp(s) | Value::TimestampTz(s) => {
                Some(s.clone())
            }
            Value::Json(v) => Some(v.to_string()),
            Value::Blob(b) => Some(base64::engine::general_purpose::STANDARD.encode(b)),
        }
    }

    /// Feeds a type-tagged, unambiguous encoding into a hasher.
    pub fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        let mut bytes = Vec::new();
        self.write_hash_bytes(&mut bytes);
        h.update(&bytes);
    }

    /// Appends the type-tagged, unambiguous encoding that row hashes are computed over (the
    /// bytes fed by [`Value::hash_into`]): a tag byte, then the payload (numbers as 8 bytes
    /// little-endian, text as its length in 8 bytes then its bytes). This defines the bytes;
    /// the diff writes the same ones faster (`plan::row_hash`, tested against this).
    #[inline]
    pub fn write_hash_bytes(&self, out: &mut Vec<u8>) {
        /// The tag and 8 bytes (a fixed-size copy).
        fn tagged(out: &mut Vec<u8>, tag: u8, eight: [u8; 8]) {
            let mut head = [tag; 9];
            head[1..].copy_from_slice(&eight);
            out.extend_from_slice(&head);
        }
        /// The tag, the length as 8 bytes, and the bytes.
        fn bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
            tagged(out, tag, (b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        match self {
            Value::Null => out.push(hash_tag::NULL),
            Value::Bool(b) => out.extend_from_slice(&[hash_tag::BOOL, u8::from(*b)]),
            Value::Int(i) => tagged(out, hash_tag::INT, i.to_le_bytes()),
            Value::Number(s) => bytes(out, hash_tag::NUMBER, s.as_bytes()),
            Value::Float(f) => tagged(out, hash_tag::FLOAT, f.to_bits().to_le_bytes()),
            Value::Text(s) => bytes(out, hash_tag::TEXT, s.as_bytes()),
            Value::Date(s) => bytes(out, hash_tag::DATE, s.as_bytes()),
            Value::Timestamp(s) => bytes(out, hash_tag::TIMESTAMP, s.as_bytes()),
            Value::TimestampTz(s) => bytes(out, hash_tag::TIMESTAMP_TZ, s.as_bytes()),
            Value::Json(v) => bytes(out, hash_tag::JSON, v.to_string().as_bytes()),
            Value::Blob(b) => bytes(out, hash_tag::BLOB, b),
        }
    }

    /// Order for cursor values of one column: numbers numerically, text-like values by their
    /// (ISO 8601) text. Values of different kinds compare as equal (never mixed in one column).
    pub fn cursor_cmp(&self, other: &Value) -> Ordering {
        fn numeric(v: &Value) -> Option<f64> {
            match v {
                Value::Int(i) => Some(*i as f64),
                Value::Number(d) => d.parse().ok(),
                Value::Float(f) => Some(*f),
                _ => None,
            }
        }
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (a, b) if numeric(a).is_some() && numeric(b).is_some() => numeric(a)
                .partial_cmp(&numeric(b))
                .unwrap_or(Ordering::Equal),
            (Value::Text(a), Value::Text(b))
            | (Value::Date(a), Value::Date(b))
            | (Value::Timestamp(a), Value::Timestamp(b))
            | (Value::TimestampTz(a), Value::TimestampTz(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

/// The tag byte of each value kind in the row hash's bytes ([`Value::write_hash_bytes`]; stored
/// in users' state, never renumbered).
pub(crate) mod hash_tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const NUMBER: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const DATE: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const TIMESTAMP_TZ: u8 = 8;
    pub const JSON: u8 = 9;
    pub const BLOB: u8 = 10;
}

/// Copies `bytes` to `buf[at..at + bytes.len()]` without a call to `memcpy` for up to 32
/// bytes: the first and the last `N` bytes (4, 8 or 16) as two fixed-size copies that overlap
/// in the middle. The diff writes a dozen short names and values a row (row hashes, planned
/// records), where a call cost more than the copy (issue #6, docs/performance.md). Inlined at
/// its few call sites: a call's own cost was most of it.
#[inline(always)]
pub(crate) fn put_short(buf: &mut [u8], at: usize, bytes: &[u8]) {
    /// For `N <= bytes.len() <= 2 * N`.
    #[inline(always)]
    fn ends<const N: usize>(buf: &mut [u8], at: usize, bytes: &[u8]) {
        if let (Some(first), Some(last)) = (bytes.first_chunk::<N>(), bytes.last_chunk::<N>()) {
            let end = at + bytes.len();
            buf[at..at + N].copy_from_slice(first);
            buf[end - N..end].copy_from_slice(last);
        }
    }
    let n = bytes.len();
    match n {
        0 => {}
        // The first, middle and last bytes are the 1 to 3 bytes, some of them twice.
        1..4 => {
            buf[at] = bytes[0];
            buf[at + n / 2] = bytes[n / 2];
            buf[at + n - 1] = bytes[n - 1];
        }
        4..8 => ends::<4>(buf, at, bytes),
        8..16 => ends::<8>(buf, at, bytes),
        16..=32 => ends::<16>(buf, at, bytes),
        _ => buf[at..at + n].copy_from_slice(bytes),
    }
}

/// Appends an integer in decimal (as `{i}` formats it, without the formatting machinery: keys
/// are written for every row read).
#[inline]
pub(crate) fn push_int(out: &mut String, i: i64) {
    out.push_str(itoa::Buffer::new().format(i));
}

/// Appends `s` as a JSON string: `"` and `\\` escaped, `\n`, `\r` and `\t` as such, other
/// control characters as `\u00XX` (this encodes every text value of every record sent as
/// JSON, and every text key).
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s, |byte| match byte {
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        b'\n' => Some("\\n"),
        b'\r' => Some("\\r"),
        b'\t' => Some("\\t"),
        0..0x20 => Some(JSON_CONTROL_ESCAPES[usize::from(byte)]),
        _ => None,
    });
    out.push('"');
}

/// `\u00XX` for each control character.
const JSON_CONTROL_ESCAPES: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\u0008", "\\u0009", "\\u000a", "\\u000b", "\\u000c", "\\u000d", "\\u000e", "\\u000f",
    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// Appends `text` with the ASCII bytes that `escape` names replaced by what it gives; the
/// runs between them are copied whole (for JSON strings and PostgreSQL's COPY text).
///
/// `escape` may name only bytes below 0x20, `"` and `\\`: eight bytes at a time with none of
/// those are skipped without asking it (most text has none).
pub(crate) fn push_escaped(
    out: &mut String,
    text: &str,
    escape: impl Fn(u8) -> Option<&'static str>,
) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(eight) = bytes[at..].first_chunk::<8>()
            && !may_be_escaped(u64::from_le_bytes(*eight))
        {
            at += 8;
            continue;
        }
        let byte = bytes[at];
        // Only ASCII bytes are replaced, so both slices end on character boundaries.
        if let Some(replacement) = escape(byte).filter(|_| byte.is_ascii()) {
            out.push_str(&text[run_start..at]);
            out.push_str(replacement);
            run_start = at + 1;
        }
        at += 1;
    }
    out.push_str(&text[run_start..]);
}

/// Whether any of eight bytes is below 0x20, `"` or `\\` (the bytes [`push_escaped`] may
/// replace). Exact: a byte's borrow can only reach the bytes above one that matched.
#[inline(always)]
fn may_be_escaped(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let below_0x20 = word.wrapping_sub(ONES * 0x20) & !word & HIGH != 0;
    below_0x20
        || zero_byte(word ^ (ONES * u64::from(b'"')))
        || zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// Parses a JSON value (as stored in state for keys) back into a `Value`.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Number(n.to_string()),
        },
        serde_json::Value::String(s) => Value::Text(s.clone()),
        other => Value::json(other.clone()),
    }
}

/// Formats microseconds since the Unix epoch: `YYYY-MM-DDTHH:MM:SS.ffffff`, then `Z` when
/// `with_zone`. Years 0 to 9999 are formatted by hand (chrono's `strftime` parses its format
/// string for every value: it was 7.5% of a mirror sync's CPU); others go through chrono.
pub fn format_timestamp_micros(micros: i64, with_zone: bool) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let Some((year, month, day)) = civil_date(days) else {
        return format_timestamp_micros_chrono(micros, with_zone);
    };
    let mut out = String::with_capacity(27);
    push_date(&mut out, year, month, day);
    out.push('T');
    push_digits(&mut out, second_of_day / 3600, 2);
    out.push(':');
    push_digits(&mut out, second_of_day / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, second_of_day % 60, 2);
    out.push('.');
    push_digits(&mut out, fraction, 6);
    if with_zone {
        out.push('Z');
    }
    out
}

fn format_timestamp_micros_chrono(micros: i64, with_zone: bool) -> String {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(dt) if with_zone => dt.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Some(dt) => dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        None => micros.to_string(),
    }
}

/// Formats days since the Unix epoch as `YYYY-MM-DD`.
pub fn format_date_days(days: i32) -> String {
    match civil_date(i64::from(days)) {
        Some((year, month, day)) => {
            let mut out = String::with_capacity(10);
            push_date(&mut out, year, month, day);
            out
        }
        None => days
            .checked_add(719_163)
            .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| days.to_string()),
    }
}

/// The proleptic Gregorian (year, month, day) of a day since 1970-01-01, for years 0 to 9999
/// (the four-digit years formatted by hand); `None` outside.
fn civil_date(days: i64) -> Option<(i64, i64, i64)> {
    // Days since 0000-03-01, in 400-year eras of 146,097 days, years starting in March.
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (0..=9999).contains(&year).then_some((year, month, day))
}

fn push_date(out: &mut String, year: i64, month: i64, day: i64) {
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
}

/// Appends a non-negative `value` as exactly `width` decimal digits (zero-padded).
fn push_digits(out: &mut String, value: i64, width: u32) {
    for place in (0..width).rev() {
        out.push(char::from(b'0' + (value / 10i64.pow(place) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_four_words_at_most() {
        // Every cell of every row read is a `Value`: a large variant held inline (an ordered
        // JSON map is 72 bytes) made rows 2.25x larger and the diff slower (issue #6).
        assert!(std::mem::size_of::<Value>() <= 32);
    }

    /// The escaping as it was written before runs were copied whole: a character at a time.
    fn json_string_a_char_at_a_time(s: &str) -> String {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    proptest::proptest! {
        #[test]
        fn json_strings_are_escaped_as_a_char_at_a_time(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é€😀])*") {
            let mut ours = String::new();
            write_json_string(&mut ours, &s);
            proptest::prop_assert_eq!(&ours, &json_string_a_char_at_a_time(&s));
            let back: String = serde_json::from_str(&ours).expect("valid JSON");
            proptest::prop_assert_eq!(back, s);
        }

        #[test]
        fn eight_bytes_are_flagged_exactly_when_one_may_be_escaped(word in proptest::prelude::any::<u64>()) {
            let one_by_one = word.to_le_bytes().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(may_be_escaped(word), one_by_one);
        }
    }

    #[test]
    fn each_byte_value_at_each_of_eight_places_is_flagged_as_it_should() {
        for filler in [b'a', 0x20, 0x21, 0x7f, 0x80, 0xff] {
            for place in 0..8 {
                for byte in 0..=255u8 {
                    let mut eight = [filler; 8];
                    eight[place] = byte;
                    let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
                    assert_eq!(
                        may_be_escaped(u64::from_le_bytes(eight)),
                        expected,
                        "{byte:#x} at {place} among {filler:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn put_short_copies_exactly_the_bytes() {
        let source: Vec<u8> = (1..=80).collect();
        for len in 0..=source.len() {
            for at in [0, 3] {
                let mut ours = vec![0xEE; at + len + 40];
                let mut plain = ours.clone();
                put_short(&mut ours, at, &source[..len]);
                plain[at..at + len].copy_from_slice(&source[..len]);
                assert_eq!(ours, plain, "{len} bytes at {at}");
            }
        }
    }

    #[test]
    fn json_encoding() {
        let cases = [
            (Value::Null, "null"),
            (Value::Bool(true), "true"),
            (Value::Int(-5), "-5"),
            (Value::Int(0), "0"),
            (Value::Int(i64::MIN), "-9223372036854775808"),
            (Value::Int(i64::MAX), "9223372036854775807"),
            (
                Value::Number("12345678901234567890.123456789".into()),
                "12345678901234567890.123456789",
            ),
            (Value::Float(f64::NAN), "null"),
            (Value::Float(1.5), "1.5"),
            (
                Value::Text("a\"b\\c\nd\u{1}é".into()),
                "\"a\\\"b\\\\c\\nd\\u0001é\"",
            ),
            (Value::Blob(vec![0, 1, 2]), "\"AAEC\""),
        ];
        for (v, want) in cases {
            assert_eq!(v.to_json_string(), want, "{v:?}");
        }
    }

    #[test]
    fn text_encoding() {
        assert_eq!(Value::Null.to_text(), None);
        assert_eq!(Value::Float(f64::INFINITY).to_text().unwrap(), "Infinity");
        assert_eq!(
            Value::json(serde_json::json!([1, "a"])).to_text().unwrap(),
            "[1,\"a\"]"
        );
    }

    #[test]
    fn time_formats() {
        assert_eq!(format_date_days(0), "1970-01-01");
        assert_eq!(format_date_days(19_723), "2024-01-01");
        assert_eq!(
            format_timestamp_micros(1_704_067_200_000_001, true),
            "2024-01-01T00:00:00.000001Z"
        );
        assert_eq!(
            format_timestamp_micros(0, false),
            "1970-01-01T00:00:00.000000"
        );
    }

    /// The hand-written formats equal chrono's, across leap years, centuries, the epoch,
    /// negative times and the limits of four-digit years.
    #[test]
    fn time_formats_match_chrono() {
        let day = 86_400_000_000i64;
        let mut micros: Vec<i64> = vec![
            0,
            -1,
            1,
            951_782_400_000_000,     // 2000-02-29
            4_107_542_399_999_999,   // 2100-02-28T23:59:59.999999
            -62_167_219_200_000_000, // 0000-01-01
            -62_167_219_200_000_001, // -0001-12-31: chrono's form
            253_402_300_799_999_999, // 9999-12-31T23:59:59.999999
            253_402_300_800_000_000, // 10000-01-01: chrono's form
            i64::MAX,
            i64::MIN,
        ];
        let mut t = -62_167_219_200_000_000i64;
        while t < 253_402_300_800_000_000 {
            micros.push(t);
            t += day * 37 + 3_723_456_789;
        }
        for m in micros {
            for zone in [true, false] {
                assert_eq!(
                    format_timestamp_micros(m, zone),
                    format_timestamp_micros_chrono(m, zone),
                    "{m}"
                );
            }
        }
        for days in (-800_000..3_000_000)
            .step_by(97)
            .chain([i32::MIN, i32::MAX])
        {
            let chrono = days
                .checked_add(719_163)
                .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| days.to_string());
            assert_eq!(format_date_days(days), chrono, "{days}");
        }
    }

    #[test]
    fn hashing_distinguishes_types() {
        let hash = |v: &Value| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            v.hash_into(&mut h);
            h.digest()
        };
        assert_ne!(hash(&Value::Int(1)), hash(&Value::Text("1".into())));
        assert_ne!(hash(&Value::Null), hash(&Value::Text(String::new())));
    }

    /// Row hashes are stored in state: the encoding must never change. These are the pieces
    /// the streaming hasher was fed one by one before the encoding was buffered.
    #[test]
    fn hash_bytes_are_the_stored_encoding() {
        let streamed = |pieces: &[&[u8]]| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for p in pieces {
                h.update(p);
            }
            h.digest()
        };
        let buffered = |v: &Value| {
            let mut out = Vec::new();
            v.write_hash_bytes(&mut out);
            xxhash_rust::xxh3::xxh3_64(&out)
        };
        let text = "2024-01-01T00:00:00.000000Z";
        let cases: Vec<(Value, u64)> = vec![
            (Value::Null, streamed(&[&[0]])),
            (Value::Bool(true), streamed(&[&[1], &[1]])),
            (Value::Int(-7), streamed(&[&[2], &(-7i64).to_le_bytes()])),
            (
                Value::Float(0.5),
                streamed(&[&[4], &0.5f64.to_bits().to_le_bytes()]),
            ),
            (
                Value::TimestampTz(text.into()),
                streamed(&[&[8], &(text.len() as u64).to_le_bytes(), text.as_bytes()]),
            ),
            (
                Value::Blob(vec![1, 2]),
                streamed(&[&[10], &2u64.to_le_bytes(), &[1, 2]]),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(buffered(&v), want, "{v:?}");
        }
    }

    #[test]
    fn cursor_order() {
        assert_eq!(Value::Int(2).cursor_cmp(&Value::Int(10)), Ordering::Less);
        assert_eq!(
            Value::Number("10.5".into()).cursor_cmp(&Value::Int(10)),
            Ordering::Greater
        );
        assert_eq!(
            Value::TimestampTz("2024-01-02T00:00:00.000000Z".into())
                .cursor_cmp(&Value::TimestampTz("2024-01-01T23:59:59.999999Z".into())),
            Ordering::Greater
        );
    }
}

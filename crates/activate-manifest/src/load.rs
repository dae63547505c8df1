//! Reading a large `manifest.json` fast (issue #6, workload 1; docs/performance.md).
//!
//! A 10,000-model manifest is about 180 MB. Most of the time of loading it goes to parsing
//! the `nodes` map; reading the whole file into fresh memory first also has the kernel zero
//! 180 MB before copying the file into it. So a large manifest is never held whole:
//!
//! - [`Window`]: the top-level values around the `nodes` map are read with `pread` a window
//!   (1 MiB) at a time into a buffer that is reused, so they are parsed while they are still
//!   in the core's cache, and only the window's memory is ever zeroed. A value longer than the
//!   window grows it.
//! - [`parse_nodes`]: the `nodes` map is cut into 64 pieces at guessed entry boundaries,
//!   which two threads take in turn, all into one map under a lock (taking pieces in turn
//!   keeps both threads busy to the end, whatever a piece costs). A piece is read a part
//!   (1 MiB) at a time, each part's entries parsed as one object by sonic-rs, which reads a
//!   manifest's nodes in about three quarters of serde_json's time (docs/performance.md). The
//!   guesses are checked by the parse itself: the map is taken only where every part is valid
//!   JSON, and then it is what one sequential parse gives.
//!
//! Anything unusual (a syntax error, a repeated key, a guess inside a node, a thread panicking,
//! the file changing while it is read) falls back to one plain `serde_json::from_slice` of the
//! whole file, so errors read exactly as before. A part longer than 64 MiB (a node that long,
//! or a map whose end is not followed by `sources`, as dbt writes it) is left to it as well.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Deserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::error::ManifestError;
use crate::manifest::{Manifest, ManifestMetadata, Node, PieceNode, Source};

/// Below this size a manifest is read whole and parsed on one thread (a thread and the
/// pieces cost more than they save).
const PIECES_FROM: usize = 4 << 20;

/// The bytes read at a time (a window, or a part of a piece of the `nodes` map: it fits a
/// core's 2 to 4 MiB cache with room to spare). Before a value is parsed, a window is refilled
/// if less than a sixteenth of it is left (64 KiB), so a value rarely runs past its end and
/// is parsed twice.
const WINDOW_BYTES: usize = 1 << 20;

/// The longest part of a piece of the `nodes` map (a part holds at least one node).
const MAX_PART_BYTES: usize = 64 << 20;

/// How far past each sixty-fourth of the file an entry boundary is looked for (a node is a
/// few KiB).
const SPLIT_SEARCH_BYTES: usize = 256 << 10;

/// Bytes read by their offset: the manifest file, or bytes already in memory.
pub(crate) trait ReadAt: Sync {
    /// The size when reading began (the end is where a read returns fewer bytes).
    fn size(&self) -> usize;
    /// Fills `buf` from `offset`; fewer bytes only at the end.
    fn read_at(&self, buf: &mut [u8], offset: usize) -> io::Result<usize>;
}

impl ReadAt for &[u8] {
    fn size(&self) -> usize {
        self.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: usize) -> io::Result<usize> {
        let rest = self.get(offset..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// The manifest's file, read by offset (`pread`), so two threads read it at once.
#[cfg(unix)]
struct ManifestFile {
    file: File,
    size: usize,
}

#[cfg(unix)]
impl ReadAt for ManifestFile {
    fn size(&self) -> usize {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], (offset + filled) as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

/// Reads and parses `manifest.json`; a large one a window at a time, its `nodes` map on two
/// threads.
pub(crate) fn load_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let read_error = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let before = file.metadata().map_err(read_error)?;
    #[cfg(unix)]
    let file = match load_in_pieces(file, &before) {
        Ok(manifest) => return Ok(manifest),
        Err(file) => file,
    };
    // Small, or anything unusual: the whole file (what the plain parse says is the error).
    let mut bytes = Vec::with_capacity(usize::try_from(before.len()).unwrap_or(0));
    io::Read::read_to_end(&mut &file, &mut bytes).map_err(read_error)?;
    // On unix the pieces were tried above, from the file.
    let parsed = if cfg!(unix) {
        serde_json::from_slice(&bytes)
    } else {
        parse_manifest(&bytes)
    };
    parsed.map_err(|source| ManifestError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A large manifest read by offset, a window at a time; the file back where it is small or
/// anything is not as expected.
#[cfg(unix)]
fn load_in_pieces(file: File, before: &std::fs::Metadata) -> Result<Manifest, File> {
    use std::os::unix::fs::MetadataExt;
    let size = usize::try_from(before.len()).unwrap_or(0);
    if size < PIECES_FROM {
        return Err(file);
    }
    let source = ManifestFile { file, size };
    let parsed = parse_top_level(&source, &piece_starts, WINDOW_BYTES);
    // A file rewritten in place while it was read (dbt writing it again) may have given a
    // mix of two files' bytes (or its metadata can no longer be read): it is read again, whole.
    let stamp = |m: &std::fs::Metadata| {
        let (mtime, ctime) = ((m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec()));
        (m.ino(), m.len(), mtime, ctime)
    };
    let unchanged = source
        .file
        .metadata()
        .is_ok_and(|after| stamp(&after) == stamp(before));
    match parsed {
        Some(manifest) if unchanged => Ok(manifest),
        _ => Err(source.file),
    }
}

/// Parses manifest bytes; the `nodes` map of a large one on two threads.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    if bytes.len() >= PIECES_FROM
        && let Some(manifest) = parse_top_level(&bytes, &piece_starts, WINDOW_BYTES)
    {
        return Ok(manifest);
    }
    serde_json::from_slice(bytes)
}

/// Where the pieces of the `nodes` map after the first start: guesses (see [`piece_starts`]).
type PieceStarts<'g> = &'g dyn Fn(&dyn ReadAt, usize) -> Vec<usize>;

/// The top-level object, key by key, through windows (and parts) of `window_bytes`; `None`
/// where anything is not as expected (the caller then parses the whole file the plain way,
/// which also gives the error to show).
fn parse_top_level(
    source: &dyn ReadAt,
    guess: PieceStarts<'_>,
    window_bytes: usize,
) -> Option<Manifest> {
    let mut at = Window::new(source, window_bytes);
    let mut before = TopLevel::default();
    at.eat(b'{')?;
    // `{}` has no metadata: the plain parse says so.
    if at.peek()? == b'}' || !parse_top_entries(&mut at, &mut before, false)? {
        return Some(Manifest {
            metadata: before.metadata?,
            nodes: BTreeMap::new(),
            sources: before.sources.unwrap_or_default(),
        });
    }
    let (nodes, map_end, tail) = parse_nodes(&mut at, guess, window_bytes)?;
    let after = match tail {
        Some(after) => after,
        None => parse_tail(&mut at, map_end)?,
    };
    Some(Manifest {
        metadata: given_once(before.metadata, after.metadata)??,
        nodes,
        sources: given_once(before.sources, after.sources)?.unwrap_or_default(),
    })
}

/// A top-level value read before or after `nodes`; `None` where it was given on both sides
/// (twice: the plain parse says so).
fn given_once<T>(before: Option<T>, after: Option<T>) -> Option<Option<T>> {
    match (before, after) {
        (Some(_), Some(_)) => None,
        (value, None) | (None, value) => Some(value),
    }
}

/// The top-level values read besides `nodes`.
#[derive(Default)]
struct TopLevel {
    metadata: Option<ManifestMetadata>,
    sources: Option<BTreeMap<String, Source>>,
}

/// Top-level entries into `top`, from a key (or, `after_value`, from the `,` or `}` after a
/// value), up to the `nodes` key (`true`: the window is after its `:`) or the object's end,
/// which must be the file's (`false`).
fn parse_top_entries(at: &mut Window<'_>, top: &mut TopLevel, after_value: bool) -> Option<bool> {
    if after_value && !at.eat_separator()? {
        return at.at_end()?.then_some(false);
    }
    loop {
        let key: String = at.value()?;
        at.eat(b':')?;
        match key.as_str() {
            "nodes" => return Some(true),
            "metadata" if top.metadata.is_none() => top.metadata = Some(at.value()?),
            "sources" if top.sources.is_none() => top.sources = Some(at.value()?),
            "metadata" | "sources" => return None,
            _ => {
                at.value::<IgnoredAny>()?;
            }
        }
        if !at.eat_separator()? {
            return at.at_end()?.then_some(false);
        }
    }
}

/// The top-level entries after the `nodes` map, which ends at `map_end` (sources, macros, the
/// lineage maps: a few MB, read in one go: a value longer than the window would be parsed
/// again each time it doubles). A second `nodes` key: `None`.
fn parse_tail(at: &mut Window<'_>, map_end: usize) -> Option<TopLevel> {
    at.seek(map_end);
    at.fill(at.source.size().saturating_sub(map_end))?;
    let mut after = TopLevel::default();
    match parse_top_entries(at, &mut after, true)? {
        true => None,
        false => Some(after),
    }
}

/// Where the `nodes` map probably ends (the offset after its `}`), searched from `from`: the
/// first end [`map_ends`] finds. Only a guess: the rest parsed from there is used only where
/// the last piece ends the map there. A wrong guess (a node's meta shaped like the map's end)
/// costs one more read from the true end to the file's end, after both threads are done.
fn guess_map_end(at: &mut Window<'_>, from: usize) -> Option<usize> {
    at.seek(from);
    loop {
        at.fill(at.buf.len())?;
        let window = &at.buf[at.pos..at.filled];
        if let Some(end) = map_ends(window).next() {
            return Some(at.offset() + end);
        }
        if at.ended {
            return None;
        }
        // Keep the window's last bytes: a match across the refill is found in the next.
        at.pos = at.filled.saturating_sub(256).max(at.pos + 1);
    }
}

/// Where in `window` the `nodes` map could end (the offsets after its `}`), in order: dbt
/// writes `sources` right after `nodes`, so the map ends at a `}}, "sources"` (its last node's
/// `}` and its own); the nodes' own `"sources": [...]` keys follow their `refs`
/// (`], "sources"`) and are passed over. A node's meta can hold the same shape, so these are
/// only candidates.
fn map_ends(window: &[u8]) -> impl Iterator<Item = usize> + '_ {
    static SOURCES_KEY: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(br#""sources""#));
    SOURCES_KEY.find_iter(window).filter_map(|found| {
        let (comma, b',') = byte_before(window, found)? else {
            return None;
        };
        let (map, b'}') = byte_before(window, comma)? else {
            return None;
        };
        let (_, b'}') = byte_before(window, map)? else {
            return None;
        };
        Some(map + 1)
    })
}

/// The `nodes` map (the window at its `{`), cut into pieces at guessed entry boundaries, the
/// pieces parsed by two threads taking them in turn (one thread with more bytes to parse than
/// the other would leave a core idle at the end), into one map.
///
/// A piece is parsed a part (about `part_bytes`) at a time by sonic-rs ([`parse_piece`]): the
/// part's entries, cut at guessed boundaries, read as one object (`{` + entries + `}`). The map
/// is taken when every part is valid JSON and no key came twice. That is enough for the result
/// to be what one sequential parse gives: the parts cover the map's text from its first entry
/// to its `}`, with a `,` between two parts, so the map's text is the parts' entries in turn,
/// valid, and read as the plain parse reads it. A guess inside a node leaves a part cut inside
/// it, which is not valid; a repeated key is counted. Either way: `None`, and the plain parse
/// decides.
///
/// The first job taken, before the pieces, is the rest of the file after the map, from where
/// the map probably ends ([`guess_map_end`]), so no core waits for it at the end. It is used
/// where the last piece ends the map at that offset; otherwise the caller parses it from there.
/// Returns the map, the offset after it, and the rest when it was parsed here.
fn parse_nodes(
    at: &mut Window<'_>,
    guess: PieceStarts<'_>,
    part_bytes: usize,
) -> Option<(Nodes, usize, Option<TopLevel>)> {
    at.eat(b'{')?;
    if at.peek()? == b'}' {
        at.pos += 1;
        return Some((BTreeMap::new(), at.offset(), None));
    }
    let first = at.offset();
    let mut starts = vec![first];
    starts.extend(guess(at.source, first).into_iter().filter(|&g| g > first));
    starts.dedup();
    if !starts.is_sorted() {
        return None;
    }
    let source = at.source;
    let nodes = Mutex::new(BTreeMap::new());
    // The rest after the map, from its guessed end: (that end, the rest parsed from there).
    let tail = Mutex::new(None);
    // Where the last piece ended the map.
    let map_end = Mutex::new(None);
    let read = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let next_job = AtomicUsize::new(0);
    let take_jobs = || {
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        loop {
            let job = next_job.fetch_add(1, Ordering::Relaxed);
            if job > starts.len() || failed.load(Ordering::Relaxed) {
                return;
            }
            if job == 0 {
                let mut window = Window::new(source, part_bytes);
                let last_piece = starts[starts.len() - 1];
                let parsed = guess_map_end(&mut window, last_piece)
                    .map(|end| (end, parse_tail(&mut window, end)));
                if let Ok(mut tail) = tail.lock() {
                    *tail = parsed;
                }
                continue;
            }
            let i = job - 1;
            let end = starts.get(i + 1).copied();
            let parsed = parse_piece(source, starts[i], end, part_bytes, &mut buf, &mut entries);
            // A key already in the map (given twice): the count below sees it. A lock poisoned
            // by the other thread's panic leaves this piece missing: the plain parse decides.
            let (Some(piece_end), Ok(mut nodes)) = (parsed, nodes.lock()) else {
                failed.store(true, Ordering::Relaxed);
                return;
            };
            read.fetch_add(entries.len(), Ordering::Relaxed);
            nodes.extend(entries.drain(..));
            if end.is_none()
                && let Ok(mut map_end) = map_end.lock()
            {
                *map_end = Some(piece_end);
            }
        }
    };
    std::thread::scope(|scope| {
        // Without a second thread this one takes every piece.
        let helper = std::thread::Builder::new()
            .spawn_scoped(scope, take_jobs)
            .ok();
        // A thread that panicked leaves its pieces missing: the plain parse then decides.
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&take_jobs)).ok();
        let theirs = helper.map_or(Some(()), |helper| helper.join().ok());
        mine.and(theirs)
    })?;
    let map_end = map_end.into_inner().ok()??;
    let nodes = nodes.into_inner().ok()?;
    // Fewer nodes than entries read: a key came twice (the plain parse keeps its last value).
    if failed.into_inner() || nodes.len() != read.into_inner() {
        return None;
    }
    let tail = match tail.into_inner().ok()? {
        Some((end, Some(tail))) if end == map_end => Some(tail),
        _ => None,
    };
    Some((nodes, map_end, tail))
}

/// The `nodes` map as read.
type Nodes = BTreeMap<String, Box<Node>>;

/// Parses the entries of the `nodes` map from `start` (an entry's start) into `entries`, a
/// part of about `part_bytes` at a time, read into `buf` behind a `{`: up to `end` (a later
/// piece's start, with a `,` before it) or, the last piece, to the map's `}`. A part ends at
/// the last entry start guessed in its bytes, or at the piece's end; the last piece's part
/// ends first at a `}` that could be the map's ([`map_ends`]). A part that is not valid JSON
/// (a guess inside a node, or no guess in its bytes: a node longer than them) is read again
/// twice as long. Returns the offset after the piece: `end`, or after the map's `}`; `None`
/// where the piece's last part is not valid JSON (a piece started inside a node, a syntax
/// error), the file ends first, or a part would be longer than `MAX_PART_BYTES`.
fn parse_piece(
    source: &dyn ReadAt,
    start: usize,
    end: Option<usize>,
    part_bytes: usize,
    buf: &mut Vec<u8>,
    entries: &mut Vec<(String, Box<Node>)>,
) -> Option<usize> {
    let mut pos = start;
    let mut want = part_bytes.max(1);
    loop {
        let upto = (pos + want).min(end.unwrap_or(source.size()));
        let len = upto - pos;
        if buf.len() < len + 2 {
            buf.resize(len + 2, 0);
        }
        buf[0] = b'{';
        // Fewer bytes than asked: the file is shorter than when it was opened.
        if source.read_at(&mut buf[1..=len], pos).ok()? != len {
            return None;
        }
        let bytes = &buf[1..=len];
        if Some(upto) == end {
            let (separator, b',') = byte_before(bytes, len)? else {
                return None;
            };
            return parse_part(buf, separator, entries).then_some(upto);
        }
        if end.is_none() {
            let map_ends: Vec<usize> = map_ends(bytes).collect();
            for map_end in map_ends {
                // The map's `}` closes the part as it is.
                if parse_part(buf, map_end - 1, entries) {
                    return Some(pos + map_end);
                }
            }
        }
        let bytes = &buf[1..=len];
        if let Some(next) = last_entry_start(bytes)
            && let Some((separator, b',')) = byte_before(bytes, next)
            && parse_part(buf, separator, entries)
        {
            pos += next;
            want = part_bytes.max(1);
            continue;
        }
        // A node longer than this, or a map whose end is not followed by `sources`: the plain
        // parse decides (rather than reading the rest of the file into one part).
        if upto == source.size() || want >= MAX_PART_BYTES {
            return None;
        }
        want *= 2;
    }
}

/// Parses the entries in `buf[1..=separator]` (`buf[0]` is `{`; `buf[1 + separator]` is the
/// `,` or `}` after them) as one JSON object, with sonic-rs, onto `entries`; `false` (and
/// `entries` as it was) where that is not valid JSON or not UTF-8 (serde_json reads bytes that
/// are not UTF-8 in a string it skips: the plain parse decides).
fn parse_part(buf: &mut [u8], separator: usize, entries: &mut Vec<(String, Box<Node>)>) -> bool {
    let kept = std::mem::replace(&mut buf[1 + separator], b'}');
    let before = entries.len();
    // Checked here, so sonic-rs is given text (it would check it itself only after reading),
    // and its `\u` escapes checked as serde_json checks them (see `unicode_escapes_are_hex`).
    let part = &buf[..separator + 2];
    let checked = simdutf8::basic::from_utf8(part)
        .ok()
        .filter(|_| unicode_escapes_are_hex(part));
    let parsed = checked.is_some_and(|text| {
        let mut de = sonic_rs::Deserializer::from_str(text);
        PartEntries(entries)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .is_ok()
    });
    buf[1 + separator] = kept;
    if !parsed {
        entries.truncate(before);
    }
    parsed
}

/// Every `\u` escape in `part` is followed by four hex digits. sonic-rs does not look at what
/// follows `\u` in a value it skips (or keeps raw), where serde_json refuses anything but hex
/// digits. A `\` preceded by an odd number of `\`s is itself escaped (`\\u` is a backslash
/// and a `u`); only JSON's strings hold backslashes, and their escapes read left to right.
fn unicode_escapes_are_hex(part: &[u8]) -> bool {
    static UNICODE_ESCAPE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(br"\u"));
    UNICODE_ESCAPE.find_iter(part).all(|at| {
        let backslashes = part[..=at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 0
            || part
                .get(at + 2..at + 6)
                .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    })
}

/// The entries of a part of the `nodes` map, pushed in the order read.
struct PartEntries<'e>(&'e mut Vec<(String, Box<Node>)>);

impl<'de> DeserializeSeed<'de> for PartEntries<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PartEntries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("entries of the nodes map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((key, PieceNode(node))) = map.next_entry::<String, PieceNode>()? {
            self.0.push((key, node));
        }
        Ok(())
    }
}

/// Where the pieces of the `nodes` map whose first entry is at `start` could start: an entry
/// boundary guessed near each sixty-fourth of the rest of the file (the map is most of a large
/// manifest). Sixty-four pieces keep both threads busy to the end (a piece of a 10,000-model
/// manifest takes about 3 ms) and leave the search for the map's end a short way to go. Only
/// guesses: the parse checks them.
fn piece_starts(source: &dyn ReadAt, start: usize) -> Vec<usize> {
    const PIECES: usize = 64;
    let rest = source.size().saturating_sub(start);
    let mut window = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    for k in 1..PIECES {
        let from = (start + rest / PIECES * k).max(starts.last().map_or(0, |s| s + 1));
        match boundary_after(source, from, &mut window) {
            Some(at) => starts.push(at),
            // No boundary this far past it: the rest is not in the map (a project whose
            // macros or lineage maps outweigh its nodes), or a node is longer than that (the
            // rest of the map is then one piece, on one thread).
            None => break,
        }
    }
    starts
}

/// The first entry boundary guessed at or after `from` ([`split_guess`]), looked for in the
/// next 16 KiB (a node is a few KiB), then twice as far at a time up to
/// `SPLIT_SEARCH_BYTES`, read into `window`.
fn boundary_after(source: &dyn ReadAt, from: usize, window: &mut Vec<u8>) -> Option<usize> {
    let mut bytes = 16 << 10;
    loop {
        window.resize(bytes, 0);
        let read = source.read_at(window, from).ok()?;
        if let Some(at) = split_guess(&window[..read]) {
            return Some(from + at);
        }
        if read < bytes || bytes >= SPLIT_SEARCH_BYTES {
            return None;
        }
        bytes *= 2;
    }
}

/// A guessed boundary between two entries of the `nodes` map in `window`: the first
/// `}, "<resource type>.` in it (the position of that quote). Only a guess: the parse checks
/// it.
fn split_guess(window: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'"', window).find(|&quote| is_entry_start(window, quote))
}

/// The last guessed boundary between two entries of the `nodes` map in `window` after its
/// first byte (see [`split_guess`]).
fn last_entry_start(window: &[u8]) -> Option<usize> {
    memchr::memrchr_iter(b'"', window).find(|&quote| quote > 0 && is_entry_start(window, quote))
}

/// The quote at `quote` looks like the start of an entry of the `nodes` map: after `},` and
/// followed by a node id's resource type.
fn is_entry_start(window: &[u8], quote: usize) -> bool {
    const NODE_ID_PREFIXES: [&[u8]; 7] = [
        b"model.",
        b"test.",
        b"seed.",
        b"snapshot.",
        b"analysis.",
        b"operation.",
        b"sql_operation.",
    ];
    let after_an_entry = matches!(byte_before(window, quote),
        Some((comma, b',')) if matches!(byte_before(window, comma), Some((_, b'}'))));
    after_an_entry
        && NODE_ID_PREFIXES
            .iter()
            .any(|p| window[quote + 1..].starts_with(p))
}

/// The nearest byte before `at` that is not whitespace, and its position.
fn byte_before(window: &[u8], at: usize) -> Option<(usize, u8)> {
    window[..at]
        .iter()
        .rposition(|b| !is_json_whitespace(b))
        .map(|i| (i, window[i]))
}

/// JSON's whitespace (not form feed, which `is_ascii_whitespace` also takes).
fn is_json_whitespace(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A position in the manifest, read a JSON value at a time through a window of its bytes
/// that is refilled (and grown for a value longer than it) as the reading moves on.
struct Window<'s> {
    source: &'s dyn ReadAt,
    /// The window's memory, allocated and zeroed once; `buf[..filled]` holds the source's
    /// bytes from `start`.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// The reading position in `buf`.
    pos: usize,
    /// The source has no bytes after `buf[..filled]`.
    ended: bool,
}

impl<'s> Window<'s> {
    fn new(source: &'s dyn ReadAt, bytes: usize) -> Self {
        Window {
            source,
            // At least a byte, so that every refill reads on.
            buf: vec![0; bytes.max(1)],
            start: 0,
            filled: 0,
            pos: 0,
            ended: false,
        }
    }

    /// The reading position in the source.
    fn offset(&self) -> usize {
        self.start + self.pos
    }

    /// Moves the reading position (bytes already in the window are kept).
    fn seek(&mut self, offset: usize) {
        if (self.start..=self.start + self.filled).contains(&offset) {
            self.pos = offset - self.start;
        } else {
            (self.start, self.filled, self.pos, self.ended) = (offset, 0, 0, false);
        }
    }

    /// At least `want` bytes from the reading position in the window (fewer only at the
    /// source's end): the unread bytes moved to the front and the rest read after them.
    fn fill(&mut self, want: usize) -> Option<()> {
        if self.filled - self.pos >= want || self.ended {
            return Some(());
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.start += self.pos;
        self.filled -= self.pos;
        self.pos = 0;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let read = self
            .source
            .read_at(&mut self.buf[self.filled..], self.start + self.filled)
            .ok()?;
        self.filled += read;
        self.ended = self.filled < self.buf.len();
        Some(())
    }

    fn skip_whitespace(&mut self) -> Option<()> {
        loop {
            while self.buf[..self.filled]
                .get(self.pos)
                .is_some_and(is_json_whitespace)
            {
                self.pos += 1;
            }
            if self.pos < self.filled || self.ended {
                return Some(());
            }
            self.fill(1)?;
        }
    }

    /// The next byte that is not whitespace.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace()?;
        self.buf[..self.filled].get(self.pos).copied()
    }

    /// Only whitespace is left.
    fn at_end(&mut self) -> Option<bool> {
        self.skip_whitespace()?;
        Some(self.pos == self.filled)
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    /// After a map entry: `,` (true: another entry follows) or `}` (false: the map closed).
    fn eat_separator(&mut self) -> Option<bool> {
        let more = match self.peek()? {
            b',' => true,
            b'}' => false,
            _ => return None,
        };
        self.pos += 1;
        Some(more)
    }

    /// One JSON value, deserialized; a value that runs past the window's end is parsed again
    /// in a window twice as long.
    fn value<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut want = (self.buf.len() / 16).max(1);
        loop {
            self.fill(want)?;
            let unread = &self.buf[self.pos..self.filled];
            let mut stream = serde_json::Deserializer::from_slice(unread).into_iter::<T>();
            match stream.next() {
                Some(Ok(value)) => {
                    self.pos += stream.byte_offset();
                    return Some(value);
                }
                Some(Err(e)) if e.is_eof() && !self.ended => {}
                None if !self.ended => {}
                _ => return None,
            }
            want = (unread.len() * 2).max(self.buf.len());
        }
    }
}

#[cfg(test)]
mod tests;

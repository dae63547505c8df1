//! Reading a large `manifest.json` fast (issue #6, workload 1; docs/performance.md).
//!
//! A 10,000-model manifest is about 180 MB. Most of the time of loading it goes to parsing
//! the `nodes` map; reading the whole file into fresh memory first also has the kernel zero
//! 180 MB before copying the file into it. So a large manifest is never held whole:
//!
//! - [`Window`]: the bytes are read with `pread` a window (1 MiB) at a time into a buffer that
//!   is reused, so they are parsed while they are still in the core's cache, and only the
//!   window's memory is ever zeroed. A value longer than the window grows it.
//! - [`parse_nodes`]: the `nodes` map is cut into sixteen pieces at guessed entry boundaries,
//!   which two threads take in turn, each through its own window, all into one map under a
//!   lock (taking pieces in turn keeps both threads busy to the end, whatever a piece costs).
//!   A guess is checked by the parse itself: a piece's result is used only if the piece before
//!   it, from a checked start, stopped exactly there at an entry's start. The result is always
//!   what one sequential parse gives.
//!
//! Anything unusual (a syntax error, a repeated key, a guess inside a node, a thread panicking,
//! the file changing while it is read) falls back to one plain `serde_json::from_slice` of the
//! whole file, so errors read exactly as before. One difference is kept: serde_json's nesting
//! limit (128) counts from each value parsed here (each node, each other top-level value), so
//! a value nested 126 or 127 levels deep, refused by one plain parse, is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::ManifestError;
use crate::manifest::{Manifest, ManifestMetadata, Node, Source};

/// Below this size a manifest is read whole and parsed on one thread (a thread and the
/// pieces cost more than they save).
const PIECES_FROM: usize = 4 << 20;

/// The bytes read at a time (a window fits a core's 2 to 4 MiB cache with room to spare).
/// Before a value is parsed, the window is refilled if less than a sixteenth of it is left
/// (64 KiB), so a value (a node is a few KiB) rarely runs past its end and is parsed twice.
const WINDOW_BYTES: usize = 1 << 20;

/// How far past each sixteenth of the file an entry boundary is looked for (a node is a few
/// KiB).
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

/// The top-level object, key by key, through windows of `window_bytes`; `None` where anything
/// is not as expected (the caller then parses the whole file the plain way, which also gives
/// the error to show).
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

/// Where the `nodes` map probably ends (the offset after its `}`), searched from `from`: dbt
/// writes `sources` right after `nodes`, so the map ends at the first `}}, "sources"` (its last
/// node's `}` and its own) after the map's last piece; the nodes' own `"sources": [...]` keys
/// follow their `refs` (`], "sources"`) and are passed over. Only a guess: the rest parsed from
/// there is used only where the pieces end the map there. A wrong guess (a node's meta shaped
/// like the map's end) costs one more read from there to the file's end, on the thread that
/// guessed.
fn guess_map_end(at: &mut Window<'_>, from: usize) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(br#""sources""#);
    at.seek(from);
    loop {
        at.fill(at.buf.len())?;
        let window = &at.buf[at.pos..at.filled];
        for found in finder.find_iter(window) {
            if let Some((comma, b',')) = byte_before(window, found)
                && let Some((map, b'}')) = byte_before(window, comma)
                && let Some((_, b'}')) = byte_before(window, map)
            {
                return Some(at.offset() + map + 1);
            }
        }
        if at.ended {
            return None;
        }
        // Keep the window's last bytes: a match across the refill is found in the next.
        at.pos = at.filled.saturating_sub(256).max(at.pos + 1);
    }
}

/// The `nodes` map (the window at its `{`), cut into pieces at guessed entry boundaries, the
/// pieces parsed by two threads taking them in turn (one thread with more bytes to parse than
/// the other would leave a core idle at the end), each through its own window, into one map.
///
/// Piece `i` starts at `starts[i]` and parses entries until it stands, at an entry's start, on
/// a later piece's start (or the map closes). From the map's true start, piece 0 reaches such
/// a start only where an entry truly starts, so the piece from there parses what one plain
/// parse would; and so on, piece by piece, to the map's end. The map is taken when that chain
/// is every piece that read an entry and no key came twice; otherwise (a guess inside a node,
/// a repeated key: rare) `None`, and the plain parse decides. So the result is always what one
/// sequential parse gives.
///
/// The first job taken, before the pieces, is the rest of the file after the map, from where
/// the map probably ends ([`guess_map_end`]), so no core waits for it at the end. It is used
/// where the pieces end the map at that offset; otherwise the caller parses it from there.
/// Returns the map, the offset after it, and the rest when it was parsed here.
fn parse_nodes(
    at: &mut Window<'_>,
    guess: PieceStarts<'_>,
    window_bytes: usize,
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
    // Without a guessed piece start, the search for the map's end would read the whole map.
    let with_tail = starts.len() > 1;
    let jobs = starts.len() + usize::from(with_tail);
    let next_job = AtomicUsize::new(0);
    let take_jobs = || {
        let mut window = Window::new(source, window_bytes);
        let mut entries = Vec::new();
        let mut ends = Vec::new();
        loop {
            let job = next_job.fetch_add(1, Ordering::Relaxed);
            if job >= jobs {
                return ends;
            }
            if with_tail && job == 0 {
                let mut window = Window::new(source, window_bytes);
                let last_piece = starts[starts.len() - 1];
                let parsed = guess_map_end(&mut window, last_piece)
                    .map(|end| (end, parse_tail(&mut window, end)));
                if let Ok(mut tail) = tail.lock() {
                    *tail = parsed;
                }
                continue;
            }
            let i = job - usize::from(with_tail);
            let end = parse_piece(&mut window, &starts, i, &mut entries);
            // A key already in the map (given twice): the count below sees it. A lock poisoned
            // by the other thread's panic leaves this piece missing: the plain parse decides.
            let Ok(mut nodes) = nodes.lock() else {
                return ends;
            };
            nodes.extend(entries.drain(..));
            ends.push((i, end));
        }
    };
    let mut ends: Vec<Option<Piece>> = (0..starts.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        // Without a second thread this one takes every piece.
        let helper = std::thread::Builder::new()
            .spawn_scoped(scope, take_jobs)
            .ok();
        let mine = take_jobs();
        // A helper that panicked leaves its pieces missing: the plain parse then decides.
        let theirs = match helper {
            Some(helper) => helper.join().ok()?,
            None => Vec::new(),
        };
        for (i, end) in mine.into_iter().chain(theirs) {
            ends[i] = Some(end);
        }
        Some(())
    })?;
    // The chain from the map's start: each piece leads to the piece it ended on.
    let mut on_chain = vec![false; starts.len()];
    let mut i = 0;
    let map_end = loop {
        on_chain[i] = true;
        match ends.get(i)?.as_ref()?.end {
            PieceEnd::AtPiece(next) => i = next,
            PieceEnd::MapClosed(end) => break end,
            PieceEnd::Failed => return None,
        }
    };
    let mut read = 0;
    for (i, end) in ends.iter().enumerate() {
        match (on_chain[i], end.as_ref().map_or(0, |piece| piece.entries)) {
            (true, n) => read += n,
            // A piece off the chain that read nothing changed nothing.
            (false, 0) => {}
            (false, _) => return None,
        }
    }
    let nodes = nodes.into_inner().ok()?;
    // Fewer nodes than entries read: a key came twice (the plain parse keeps its last value).
    if nodes.len() != read {
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

/// How many entries a piece of the `nodes` map read, and where it ended.
struct Piece {
    entries: usize,
    end: PieceEnd,
}

enum PieceEnd {
    /// At the start of this later piece, as an entry's start.
    AtPiece(usize),
    /// The map's `}` was read; the offset after it.
    MapClosed(usize),
    /// Something unexpected (a piece that started inside a node usually ends so).
    Failed,
}

/// Parses `"key": node` entries from `starts[i]` into `entries` until, at an entry's start,
/// the offset is a later piece's start, or the map closes.
fn parse_piece(
    at: &mut Window<'_>,
    starts: &[usize],
    i: usize,
    entries: &mut Vec<(String, Box<Node>)>,
) -> Piece {
    at.seek(starts[i]);
    let mut read = 0;
    let mut next = i + 1;
    let end = loop {
        if at.skip_whitespace().is_none() {
            break PieceEnd::Failed;
        }
        let offset = at.offset();
        while starts.get(next).is_some_and(|&s| s < offset) {
            next += 1;
        }
        if starts.get(next) == Some(&offset) {
            break PieceEnd::AtPiece(next);
        }
        let Some(entry) = parse_entry(at) else {
            break PieceEnd::Failed;
        };
        entries.push(entry);
        read += 1;
        match at.eat_separator() {
            Some(true) => {}
            Some(false) => break PieceEnd::MapClosed(at.offset()),
            None => break PieceEnd::Failed,
        }
    };
    Piece { entries: read, end }
}

/// One `"key": node` entry.
fn parse_entry(at: &mut Window<'_>) -> Option<(String, Box<Node>)> {
    let key: String = at.value()?;
    at.eat(b':')?;
    Some((key, at.value()?))
}

/// Where the pieces of the `nodes` map whose first entry is at `start` could start: an entry
/// boundary guessed near each sixteenth of the rest of the file (the map is most of a large
/// manifest; guesses past its end lead nowhere and are dropped). Only guesses: the parse
/// checks them.
fn piece_starts(source: &dyn ReadAt, start: usize) -> Vec<usize> {
    const PIECES: usize = 16;
    let rest = source.size().saturating_sub(start);
    let mut window = vec![0; SPLIT_SEARCH_BYTES];
    let mut starts: Vec<usize> = Vec::new();
    for k in 1..PIECES {
        let from = (start + rest / PIECES * k).max(starts.last().map_or(0, |s| s + 1));
        let Ok(read) = source.read_at(&mut window, from) else {
            break;
        };
        match split_guess(&window[..read]) {
            Some(at) => starts.push(from + at),
            // No boundary this far past it: the rest is not in the map (a project whose
            // macros or lineage maps outweigh its nodes).
            None => break,
        }
    }
    starts
}

/// A guessed boundary between two entries of the `nodes` map in `window`: the first
/// `}, "<resource type>.` in it (the position of that quote). Only a guess: the parse checks
/// it.
fn split_guess(window: &[u8]) -> Option<usize> {
    const NODE_ID_PREFIXES: [&[u8]; 7] = [
        b"model.",
        b"test.",
        b"seed.",
        b"snapshot.",
        b"analysis.",
        b"operation.",
        b"sql_operation.",
    ];
    let mut from = 0;
    loop {
        let quote = from + window.get(from..)?.iter().position(|&b| b == b'"')?;
        from = quote + 1;
        let after_an_entry = matches!(byte_before(window, quote),
            Some((comma, b',')) if matches!(byte_before(window, comma), Some((_, b'}'))));
        if after_an_entry
            && NODE_ID_PREFIXES
                .iter()
                .any(|p| window[from..].starts_with(p))
        {
            return Some(quote);
        }
    }
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

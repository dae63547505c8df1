//! Reading a large `manifest.json` fast (issue #6, workload 1; docs/performance.md).
//!
//! A 10,000-model manifest is about 180 MB. Two things cost most of the time of loading it:
//! the kernel filling fresh memory with the file (a page fault and a page zeroed every 4 KiB),
//! and parsing the `nodes` map. Both are split over two threads here:
//!
//! - [`read_file`]: a large file is read into an anonymous mapping that asks for huge pages
//!   (one fault every 2 MiB instead of every 4 KiB), its two halves on two threads.
//! - [`parse_manifest`]: the `nodes` map is cut into sixteen pieces at guessed entry
//!   boundaries, which two threads take in turn, each parsing into its own map (taking pieces
//!   in turn keeps both threads busy to the end, whatever a piece costs). A guess is checked
//!   by the parse itself: a piece's result is used only if the piece before it, from a checked
//!   start, stopped exactly there at an entry's start. The result is always what one
//!   sequential parse gives.
//!
//! Anything unusual (a syntax error, a repeated key, a guess inside a node, a thread panicking)
//! falls back to one plain `serde_json::from_slice` of the whole file, so errors read exactly
//! as before. One difference is kept: serde_json's nesting limit (128) counts from each value
//! parsed here, so a node nested 126 or 127 levels deep, refused by one plain parse, is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::manifest::{Manifest, ManifestMetadata, Node, Source};

/// Below this size a manifest is read and parsed on one thread (a thread and a mapping cost
/// more than they save).
const TWO_THREADS_FROM: usize = 4 << 20;

/// How far past the middle a split of the `nodes` map is looked for (a node is a few KiB).
const SPLIT_SEARCH_BYTES: usize = 1 << 20;

/// A file's bytes: a `Vec` for a small file, an anonymous mapping for a large one.
pub(crate) enum FileBytes {
    Small(Vec<u8>),
    Large(memmap2::MmapMut),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Small(v) => v,
            FileBytes::Large(m) => m,
        }
    }
}

/// Reads a whole file; a large one on two threads into memory backed by huge pages where the
/// kernel offers them.
pub(crate) fn read_file(path: &Path) -> io::Result<FileBytes> {
    let file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    if len < TWO_THREADS_FROM {
        return std::fs::read(path).map(FileBytes::Small);
    }
    match read_in_two_halves(&file, len) {
        Some(memory) if file.metadata()?.len() == len as u64 => Ok(FileBytes::Large(memory)),
        // No second thread to be had, a read error, or the file changed size while it was
        // read (dbt rewriting it): read it (and report its error) as before, on one thread.
        _ => std::fs::read(path).map(FileBytes::Small),
    }
}

#[cfg(unix)]
fn read_in_two_halves(file: &File, len: usize) -> Option<memmap2::MmapMut> {
    use std::os::unix::fs::FileExt;
    let mut memory = memmap2::MmapMut::map_anon(len).ok()?;
    // Advice only: without transparent huge pages the read works the same, with 4 KiB pages.
    #[cfg(target_os = "linux")]
    let _ = memory.advise(memmap2::Advice::HugePage);
    let (head, tail) = memory.split_at_mut(len / 2);
    let read_whole = std::thread::scope(|scope| {
        let tail_thread = std::thread::Builder::new()
            .spawn_scoped(scope, || file.read_exact_at(tail, (len / 2) as u64))
            .ok()?;
        let head_read = file.read_exact_at(head, 0);
        let tail_read = tail_thread.join().ok()?;
        Some(head_read.is_ok() && tail_read.is_ok())
    });
    read_whole.filter(|whole| *whole).map(|_| memory)
}

#[cfg(not(unix))]
fn read_in_two_halves(_file: &File, _len: usize) -> Option<memmap2::MmapMut> {
    None
}

/// Parses manifest bytes; the `nodes` map of a large one on two threads.
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    if bytes.len() >= TWO_THREADS_FROM
        && let Some(manifest) = parse_top_level(bytes, &piece_starts)
    {
        return Ok(manifest);
    }
    serde_json::from_slice(bytes)
}

/// Where the pieces of the `nodes` map after the first start: guesses (see [`piece_starts`]).
type PieceStarts<'g> = &'g dyn Fn(&[u8], usize) -> Vec<usize>;

/// The top-level object, key by key; `None` where anything is not as expected (the caller then
/// parses the whole file the plain way, which also gives the error to show).
fn parse_top_level(bytes: &[u8], guess: PieceStarts<'_>) -> Option<Manifest> {
    let mut at = Cursor { bytes, pos: 0 };
    let mut metadata: Option<ManifestMetadata> = None;
    let mut nodes: Option<BTreeMap<String, Node>> = None;
    let mut sources: Option<BTreeMap<String, Source>> = None;
    at.eat(b'{')?;
    if at.peek()? != b'}' {
        loop {
            let key: String = at.value()?;
            at.eat(b':')?;
            match key.as_str() {
                "metadata" if metadata.is_none() => metadata = Some(at.value()?),
                "nodes" if nodes.is_none() => nodes = Some(parse_nodes(&mut at, guess)?),
                "sources" if sources.is_none() => sources = Some(at.value()?),
                "metadata" | "nodes" | "sources" => return None,
                _ => {
                    at.value::<IgnoredAny>()?;
                }
            }
            if !at.eat_separator()? {
                break;
            }
        }
    } else {
        at.eat(b'}')?;
    }
    at.skip_whitespace();
    if at.pos != bytes.len() {
        return None;
    }
    Some(Manifest {
        metadata: metadata?,
        nodes: nodes.unwrap_or_default(),
        sources: sources.unwrap_or_default(),
    })
}

/// The `nodes` map (the cursor at its `{`), cut into pieces at guessed entry boundaries, the
/// pieces parsed by two threads taking them in turn (one thread with more bytes to parse than
/// the other would leave a core idle at the end), each thread into its own map.
///
/// Piece `i` starts at `starts[i]` and parses entries until it stands, at an entry's start, on
/// a later piece's start (or the map closes). From the map's true start, piece 0 reaches such
/// a start only where an entry truly starts, so the piece from there parses what one plain
/// parse would; and so on, piece by piece, to the map's end. The two maps are taken when that
/// chain is every piece that read an entry and no key came twice; otherwise (a guess inside a
/// node, a repeated key: rare) `None`, and the plain parse decides. So the result is always
/// what one sequential parse gives.
fn parse_nodes(at: &mut Cursor<'_>, guess: PieceStarts<'_>) -> Option<BTreeMap<String, Node>> {
    at.eat(b'{')?;
    if at.peek()? == b'}' {
        at.pos += 1;
        return Some(BTreeMap::new());
    }
    let mut starts = vec![at.pos];
    starts.extend(guess(at.bytes, at.pos).into_iter().filter(|&g| g > at.pos));
    starts.dedup();
    if !starts.is_sorted() {
        return None;
    }
    let bytes = at.bytes;
    let next_piece = AtomicUsize::new(0);
    let take_pieces = || {
        let mut nodes = BTreeMap::new();
        let mut ends = Vec::new();
        loop {
            let i = next_piece.fetch_add(1, Ordering::Relaxed);
            if i >= starts.len() {
                return (nodes, ends);
            }
            ends.push((i, parse_piece(bytes, &starts, i, &mut nodes)));
        }
    };
    let mut ends: Vec<Option<Piece>> = (0..starts.len()).map(|_| None).collect();
    let (mut nodes, mut helper_nodes) = std::thread::scope(|scope| {
        // Without a second thread this one takes every piece.
        let helper = std::thread::Builder::new()
            .spawn_scoped(scope, take_pieces)
            .ok();
        let (nodes, mine) = take_pieces();
        // A helper that panicked leaves its pieces missing: the plain parse then decides.
        let (helper_nodes, theirs) = match helper {
            Some(helper) => helper.join().ok()?,
            None => Default::default(),
        };
        for (i, end) in mine.into_iter().chain(theirs) {
            ends[i] = Some(end);
        }
        Some((nodes, helper_nodes))
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
    nodes.append(&mut helper_nodes);
    // Fewer nodes than entries read: a key came twice (the plain parse keeps its last value).
    if nodes.len() != read {
        return None;
    }
    at.pos = map_end;
    Some(nodes)
}

/// How many entries a piece of the `nodes` map read, and where it ended.
struct Piece {
    entries: usize,
    end: PieceEnd,
}

enum PieceEnd {
    /// At the start of this later piece, as an entry's start.
    AtPiece(usize),
    /// The map's `}` was read; the position after it.
    MapClosed(usize),
    /// Something unexpected (a piece that started inside a node usually ends so).
    Failed,
}

/// Parses `"key": node` entries from `starts[i]` into `nodes` until, at an entry's start, the
/// position is a later piece's start, or the map closes.
fn parse_piece(
    bytes: &[u8],
    starts: &[usize],
    i: usize,
    nodes: &mut BTreeMap<String, Node>,
) -> Piece {
    let mut at = Cursor {
        bytes,
        pos: starts[i],
    };
    let mut entries = 0;
    let mut next = i + 1;
    let end = loop {
        at.skip_whitespace();
        while starts.get(next).is_some_and(|&s| s < at.pos) {
            next += 1;
        }
        if starts.get(next) == Some(&at.pos) {
            break PieceEnd::AtPiece(next);
        }
        let Some((key, node)) = parse_entry(&mut at) else {
            break PieceEnd::Failed;
        };
        nodes.insert(key, node);
        entries += 1;
        match at.eat_separator() {
            Some(true) => {}
            Some(false) => break PieceEnd::MapClosed(at.pos),
            None => break PieceEnd::Failed,
        }
    };
    Piece { entries, end }
}

/// One `"key": node` entry.
fn parse_entry(at: &mut Cursor<'_>) -> Option<(String, Node)> {
    let key: String = at.value()?;
    at.eat(b':')?;
    Some((key, at.value()?))
}

/// Where the pieces of the `nodes` map whose first entry is at `start` could start: an entry
/// boundary guessed near each sixteenth of the rest of the file (the map is most of a large
/// manifest; guesses past its end lead nowhere and are dropped). Only guesses: the parse
/// checks them.
fn piece_starts(bytes: &[u8], start: usize) -> Vec<usize> {
    const PIECES: usize = 16;
    let rest = bytes.len().saturating_sub(start);
    let mut starts: Vec<usize> = Vec::new();
    for k in 1..PIECES {
        let from = (start + rest / PIECES * k).max(starts.last().map_or(0, |s| s + 1));
        match split_guess(bytes, start, from) {
            Some(guess) => starts.push(guess),
            // Past this without a boundary, the rest is not in the map.
            None => break,
        }
    }
    starts
}

/// A guessed boundary between two entries of the `nodes` map whose first entry is at `start`:
/// the first `}, "<resource type>.` from `from`. Only a guess: the parse checks it.
fn split_guess(bytes: &[u8], start: usize, mut from: usize) -> Option<usize> {
    const NODE_ID_PREFIXES: [&[u8]; 7] = [
        b"model.",
        b"test.",
        b"seed.",
        b"snapshot.",
        b"analysis.",
        b"operation.",
        b"sql_operation.",
    ];
    // Past this without a boundary, `from` is not in the map (a project whose macros or
    // lineage maps outweigh its nodes): no guess, rather than a scan of the rest.
    let search_end = bytes.len().min(from + SPLIT_SEARCH_BYTES);
    loop {
        let quote = from
            + bytes
                .get(from..search_end)?
                .iter()
                .position(|&b| b == b'"')?;
        from = quote + 1;
        let mut before = bytes[start..quote]
            .iter()
            .rev()
            .filter(|b| !is_json_whitespace(b));
        let after_an_entry = before.next() == Some(&b',') && before.next() == Some(&b'}');
        if after_an_entry
            && NODE_ID_PREFIXES
                .iter()
                .any(|p| bytes[from..].starts_with(p))
        {
            return Some(quote);
        }
    }
}

/// JSON's whitespace (not form feed, which `is_ascii_whitespace` also takes).
fn is_json_whitespace(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A position in the manifest's bytes, read a JSON value at a time.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.pos).is_some_and(is_json_whitespace) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
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

    /// One JSON value, deserialized.
    fn value<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let mut stream =
            serde_json::Deserializer::from_slice(self.bytes.get(self.pos..)?).into_iter::<T>();
        let value = stream.next()?.ok()?;
        self.pos += stream.byte_offset();
        Some(value)
    }
}

#[cfg(test)]
mod tests;

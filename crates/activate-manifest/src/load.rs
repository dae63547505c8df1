//! Reading a large `manifest.json` fast (issue #6, workload 1; docs/performance.md).
//!
//! A 10,000-model manifest is about 180 MB. Two things cost most of the time of loading it:
//! the kernel filling fresh memory with the file (a page fault and a page zeroed every 4 KiB),
//! and parsing the `nodes` map. Both are split over two threads here:
//!
//! - [`read_file`]: a large file is read into an anonymous mapping that asks for huge pages
//!   (one fault every 2 MiB instead of every 4 KiB), its two halves on two threads.
//! - [`parse_manifest`]: the `nodes` map is parsed by two threads, each from its own start. The
//!   second thread starts at a guessed entry boundary near the middle of the map; the first
//!   thread parses from the top and takes the second thread's entries only if it reaches
//!   that exact byte as an entry boundary itself. A guess that was not a boundary (a key that
//!   merely looks like a node id inside a node) is never reached, and the first thread goes
//!   on alone: the result is always what one sequential parse gives.
//!
//! Anything unusual (a syntax error, a duplicate top-level key, a bad split, no second thread)
//! falls back to one plain `serde_json::from_slice` of the whole file, so errors read exactly
//! as before. One difference is kept: serde_json's nesting limit (128) counts from each value
//! parsed here, so a node nested 126 or 127 levels deep, refused by one plain parse, is read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
        && let Some(manifest) = parse_top_level(bytes, &split_guess)
    {
        return Ok(manifest);
    }
    serde_json::from_slice(bytes)
}

/// Where the second thread starts in the `nodes` map: a guess (see [`split_guess`]).
type SplitGuess<'g> = &'g dyn Fn(&[u8], usize) -> Option<usize>;

/// The top-level object, key by key; `None` where anything is not as expected (the caller then
/// parses the whole file the plain way, which also gives the error to show).
fn parse_top_level(bytes: &[u8], guess: SplitGuess<'_>) -> Option<Manifest> {
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

/// The `nodes` map (the cursor at its `{`): a second thread parses from a guessed entry
/// boundary near its middle to its end, while this one parses from its start.
fn parse_nodes(at: &mut Cursor<'_>, guess: SplitGuess<'_>) -> Option<BTreeMap<String, Node>> {
    at.eat(b'{')?;
    let mut nodes = BTreeMap::new();
    if at.peek()? == b'}' {
        at.pos += 1;
        return Some(nodes);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // The second thread, from the guess; without a guess or a thread, this one reads all.
        let second = guess(at.bytes, at.pos).and_then(|guess| {
            let (bytes, stop) = (at.bytes, &stop);
            let thread = std::thread::Builder::new().spawn_scoped(scope, move || {
                let mut from_guess = Cursor { bytes, pos: guess };
                let mut nodes = BTreeMap::new();
                match parse_entries(&mut from_guess, &mut nodes, None, stop)? {
                    EntriesEnd::MapClosed => Some((nodes, from_guess.pos)),
                    EntriesEnd::AtGuess => None,
                }
            });
            Some((guess, thread.ok()?))
        });
        let end = parse_entries(at, &mut nodes, second.as_ref().map(|(g, _)| *g), &stop);
        // The second thread's work is used only when this one reached its start.
        let reached_guess = matches!(end, Some(EntriesEnd::AtGuess));
        if !reached_guess {
            stop.store(true, Ordering::Relaxed);
        }
        let rest = second.and_then(|(_, thread)| thread.join().ok().flatten());
        match (end?, rest) {
            (EntriesEnd::MapClosed, _) => {}
            (EntriesEnd::AtGuess, Some((mut rest, end))) => {
                nodes.append(&mut rest);
                at.pos = end;
            }
            (EntriesEnd::AtGuess, None) => return None,
        }
        Some(nodes)
    })
}

enum EntriesEnd {
    /// Stopped at the guessed boundary, which is an entry's start.
    AtGuess,
    /// The map's `}` was read.
    MapClosed,
}

/// Parses `"key": node` entries into `nodes`, from the cursor at an entry's key, until the
/// map's closing `}` or, when `guess` is given, until that position as an entry's start.
/// `None` on anything unexpected, or when told to stop.
fn parse_entries(
    at: &mut Cursor<'_>,
    nodes: &mut BTreeMap<String, Node>,
    guess: Option<usize>,
    stop: &AtomicBool,
) -> Option<EntriesEnd> {
    loop {
        at.skip_whitespace();
        if Some(at.pos) == guess {
            return Some(EntriesEnd::AtGuess);
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        let key: String = at.value()?;
        at.eat(b':')?;
        let node: Node = at.value()?;
        nodes.insert(key, node);
        if !at.eat_separator()? {
            return Some(EntriesEnd::MapClosed);
        }
    }
}

/// A guessed boundary between two entries of the `nodes` map whose first entry is at `start`:
/// the first `}, "<resource type>.` after the middle of the rest of the file (the map is
/// most of a large manifest). Only a guess: the parse checks it.
fn split_guess(bytes: &[u8], start: usize) -> Option<usize> {
    const NODE_ID_PREFIXES: [&[u8]; 7] = [
        b"model.",
        b"test.",
        b"seed.",
        b"snapshot.",
        b"analysis.",
        b"operation.",
        b"sql_operation.",
    ];
    let mut from = start + (bytes.len().checked_sub(start)?) / 2;
    // Past this without a boundary, the middle is not in the map (a project whose macros or
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

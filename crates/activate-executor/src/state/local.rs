//! The local state store: files under `<project>/.dbt-activate/` (or `--state-dir`).
//!
//! ```text
//! <root>/.lock                                   held for the whole run; refuses a second run
//! <root>/<target>/history.jsonl                  one line per sync per run
//! <root>/<target>/<sync>/<destination-hash>/snapshot   committed state, replaced atomically
//! <root>/<target>/<sync>/<destination-hash>/journal    confirmed batches since the snapshot
//! ```
//! A run killed at any point leaves the last snapshot plus the journal of everything the
//! destination confirmed since; the next load replays the journal (a torn last line is
//! ignored, it was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::destination::file::write_atomically_with;
use crate::error::StateError;
use crate::state::{Confirmed, StateKey, SyncState, cursor_from_json, cursor_to_json};

const HEADER: &str = "dbt-activate state v1";
const FORMAT_VERSION: u32 = 1;

pub struct LocalStateStore {
    root: PathBuf,
    _lock: File,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalStateStore {
    /// Opens the store and takes its lock, or explains who holds it.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let lock_path = root.join(".lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock_exclusive() {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                return Err(StateError::Locked(format!(
                    "another dbt-activate run holds the state lock {} ({}); wait for it to finish, or give this run its own --state-dir",
                    lock_path.display(),
                    if holder.trim().is_empty() {
                        "pid unknown".to_owned()
                    } else {
                        format!("pid {}", holder.trim())
                    }
                )));
            }
        }
        lock.set_len(0).map_err(io(&lock_path))?;
        let _ = write!(lock, "{}", std::process::id());
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, key: &StateKey) -> PathBuf {
        let identity = xxhash_rust::xxh3::xxh3_64(key.destination.as_bytes());
        self.root
            .join(&key.target)
            .join(&key.sync)
            .join(format!("{identity:016x}"))
    }

    pub fn load(&self, key: &StateKey) -> Result<SyncState, StateError> {
        let dir = self.dir_of(key);
        let mut state = SyncState::default();
        let snapshot = dir.join("snapshot");
        match File::open(&snapshot) {
            Ok(f) => read_snapshot(&snapshot, f, &mut state)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&snapshot)(e)),
        }
        let journal = dir.join("journal");
        match File::open(&journal) {
            Ok(f) => replay_journal(&journal, f, &mut state)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&journal)(e)),
        }
        state.mark_loaded();
        Ok(state)
    }

    /// Appends confirmed changes to the sync's journal and syncs it to disk.
    pub fn journal(&self, key: &StateKey, changes: &[Confirmed]) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let dir = self.dir_of(key);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("journal");
        let mut text = String::with_capacity(changes.len() * 48);
        for change in changes {
            match change {
                Confirmed::Upserted { key, row_hash } | Confirmed::Inserted { key, row_hash } => {
                    text.push('+');
                    push_hex16(&mut text, *row_hash);
                    text.push(' ');
                    text.push_str(key);
                    text.push('\n');
                }
                Confirmed::Removed { key } => {
                    text.push('-');
                    text.push_str(key);
                    text.push('\n');
                }
            }
        }
        append_synced(&path, &text)
    }

    /// Writes the whole state as the new snapshot, then empties the journal. When the state
    /// did not change since it was loaded and the snapshot alone holds it (no journal), the
    /// snapshot on disk is already this state and nothing is written (issue #6: a run with no
    /// change rewrote a million-entry file).
    pub fn commit(&self, key: &StateKey, state: &SyncState) -> Result<(), StateError> {
        let dir = self.dir_of(key);
        let path = dir.join("snapshot");
        if state.unchanged() && path.is_file() && !dir.join("journal").exists() {
            return Ok(());
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut head = String::from(HEADER);
        head.push('\n');
        let meta = serde_json::json!({
            "format": FORMAT_VERSION,
            "sync": key.sync,
            "target": key.target,
            "destination": key.destination,
            "cursor": state.cursor.as_ref().map(cursor_to_json),
            "committed_at": chrono::Utc::now().to_rfc3339(),
        });
        head.push_str(&meta.to_string());
        head.push('\n');
        // Streamed a line at a time: the snapshot of a large model is never a second copy in
        // memory.
        write_atomically_with(&path, |out| {
            out.write_all(head.as_bytes())?;
            let mut line = String::with_capacity(64);
            for (key, row_hash) in state.snapshot.iter() {
                line.clear();
                push_hex16(&mut line, row_hash);
                line.push(' ');
                line.push_str(key);
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
            writeln!(out, "end {}", state.snapshot.len())
        })
        .map_err(io(&path))?;
        let journal = dir.join("journal");
        match std::fs::remove_file(&journal) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&journal)(e)),
        }
    }

    /// Forgets a sync's state for a target (every destination it wrote to).
    pub fn reset(&self, target: &str, sync: &str) -> Result<bool, StateError> {
        let dir = self.root.join(target).join(sync);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&dir)(e)),
        }
    }

    /// Appends run records to the target's history.
    pub fn append_history(
        &self,
        target: &str,
        records: &[serde_json::Value],
    ) -> Result<(), StateError> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("history.jsonl");
        let mut text = String::new();
        for r in records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        append_synced(&path, &text)
    }

    /// The last history record of each sync for a target.
    pub fn last_runs(&self, target: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
        Self::read_last_runs(&self.root, target)
    }

    /// Every history record of a target, oldest first, read without the lock.
    pub fn read_history(root: &Path, target: &str) -> Vec<serde_json::Value> {
        let path = root.join(target).join("history.jsonl");
        std::fs::read_to_string(path)
            .map(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reads the history without taking the lock (appends are whole lines; a torn last line
    /// of a run in progress is skipped).
    pub fn read_last_runs(
        root: &Path,
        target: &str,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let path = root.join(target).join("history.jsonl");
        let mut last = std::collections::BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && let Some(name) = v.get("name").and_then(|n| n.as_str())
                {
                    last.insert(name.to_owned(), v);
                }
            }
        }
        last
    }
}

/// Appends whole lines and syncs them to disk before returning.
fn append_synced(path: &Path, text: &str) -> Result<(), StateError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(io(path))
}

/// Appends `v` as 16 lower-case hex digits.
fn push_hex16(out: &mut String, v: u64) {
    let mut hex = [0u8; 16];
    // 8 bytes always fit 16 digits.
    let _ = hex::encode_to_slice(v.to_be_bytes(), &mut hex);
    out.push_str(std::str::from_utf8(&hex).unwrap_or_default());
}

fn corrupt(path: &Path, message: impl Into<String>) -> StateError {
    StateError::Corrupt {
        path: path.display().to_string(),
        message: format!(
            "{}; it was not written whole by dbt-activate. Restore it from a backup, or run `dbt-activate reset --select <sync>` to forget it (the next run resends every row)",
            message.into()
        ),
    }
}

fn read_snapshot(path: &Path, mut file: File, state: &mut SyncState) -> Result<(), StateError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| corrupt(path, "it is not UTF-8"))?;
    let mut lines = text.split_terminator('\n');
    let header = lines.next().unwrap_or_default();
    if header != HEADER {
        if let Some(v) = header.strip_prefix("dbt-activate state v") {
            return Err(StateError::Corrupt {
                path: path.display().to_string(),
                message: format!(
                    "written in state format v{v}, this dbt-activate reads v{FORMAT_VERSION}; upgrade dbt-activate"
                ),
            });
        }
        return Err(corrupt(path, "the header is missing"));
    }
    let meta_line = lines.next().unwrap_or_default();
    let meta: serde_json::Value = serde_json::from_str(meta_line)
        .map_err(|_| corrupt(path, "the metadata line is not JSON"))?;
    state.cursor = meta.get("cursor").and_then(cursor_from_json);
    // One entry per line: 16 hex digits, a space, the key.
    let entries = text.bytes().filter(|b| *b == b'\n').count();
    let entry_bytes = text.len().saturating_sub(header.len() + meta_line.len());
    state
        .snapshot
        .reserve(entries, (entry_bytes / entries.max(1)).saturating_sub(17));
    for (count, line) in lines.enumerate() {
        if let Some(n) = line.strip_prefix("end ") {
            if n.parse::<usize>().ok() != Some(count) {
                return Err(corrupt(
                    path,
                    format!("it ends after {count} entries but says {n}"),
                ));
            }
            state.snapshot.shrink_to_fit();
            return Ok(());
        }
        // 16 hex digits, a space, the key (the hash is written with all 16 digits).
        let (hash, key) = match (line.get(..16), line.get(16..)) {
            (Some(hash), Some(rest)) if rest.starts_with(' ') => (hash, &rest[1..]),
            _ => line
                .split_once(' ')
                .ok_or_else(|| corrupt(path, format!("entry {} is malformed", count + 1)))?,
        };
        let row_hash = u64::from_str_radix(hash, 16)
            .map_err(|_| corrupt(path, format!("entry {} has a bad hash", count + 1)))?;
        // The file was written from a snapshot: its keys are distinct.
        state.snapshot.push_new(key, row_hash);
    }
    Err(corrupt(path, "it is truncated (no end marker)"))
}

fn replay_journal(path: &Path, file: File, state: &mut SyncState) -> Result<(), StateError> {
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io(path))?;
        if n == 0 || !line.ends_with('\n') {
            // End, or a torn last line that was never acknowledged.
            return Ok(());
        }
        let entry = line.trim_end_matches('\n');
        if let Some(rest) = entry.strip_prefix('+') {
            if let Some((hash, key)) = rest.split_once(' ')
                && let Ok(row_hash) = u64::from_str_radix(hash, 16)
            {
                state.apply(&Confirmed::Upserted {
                    key: key.into(),
                    row_hash,
                });
                continue;
            }
            return Err(corrupt(path, "a journal line is malformed"));
        } else if let Some(key) = entry.strip_prefix('-') {
            state.apply(&Confirmed::Removed { key: key.into() });
        } else {
            return Err(corrupt(path, "a journal line is malformed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn row_hashes_are_written_as_sixteen_lower_case_hex_digits() {
        for v in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef, 1 << 63] {
            let mut out = String::from("+");
            push_hex16(&mut out, v);
            assert_eq!(out, format!("+{v:016x}"));
        }
    }

    fn key() -> StateKey {
        StateKey {
            target: "dev".into(),
            sync: "s".into(),
            destination: "file /x".into(),
        }
    }

    #[test]
    fn commit_load_and_journal_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let mut state = SyncState::default();
        state.apply(&Confirmed::Upserted {
            key: "[1]".into(),
            row_hash: 7,
        });
        state.cursor = Some(Value::TimestampTz("2024-01-01T00:00:00.000000Z".into()));
        store.commit(&key(), &state).unwrap();
        store
            .journal(
                &key(),
                &[
                    Confirmed::Upserted {
                        key: "[2]".into(),
                        row_hash: 9,
                    },
                    Confirmed::Removed { key: "[1]".into() },
                ],
            )
            .unwrap();
        // A torn line at the end is ignored.
        let journal = store.dir_of(&key()).join("journal");
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"+00000000000000ff [3").unwrap();
        let loaded = store.load(&key()).unwrap();
        assert_eq!(loaded.snapshot.len(), 1);
        assert_eq!(loaded.row_hash_of("[2]"), Some(9));
        assert_eq!(loaded.cursor, state.cursor);
    }

    #[test]
    fn an_unchanged_state_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let mut state = SyncState::default();
        state.apply(&Confirmed::Upserted {
            key: "[1]".into(),
            row_hash: 7,
        });
        store.commit(&key(), &state).unwrap();
        let snapshot = store.dir_of(&key()).join("snapshot");
        let written = std::fs::read_to_string(&snapshot).unwrap();
        // A marker the next commit would overwrite, were it to write.
        std::fs::write(&snapshot, written.replace("\"sync\"", "\"sync\" ")).unwrap();
        let marked = std::fs::read_to_string(&snapshot).unwrap();

        let loaded = store.load(&key()).unwrap();
        store.commit(&key(), &loaded).unwrap();
        assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), marked);

        // A moved cursor, a confirmed change or a journal to fold in are written.
        let mut moved = store.load(&key()).unwrap();
        moved.cursor = Some(Value::Int(3));
        store.commit(&key(), &moved).unwrap();
        assert_ne!(std::fs::read_to_string(&snapshot).unwrap(), marked);
        let mut applied = store.load(&key()).unwrap();
        applied.apply(&Confirmed::Upserted {
            key: "[1]".into(),
            row_hash: 7,
        });
        std::fs::write(&snapshot, &marked).unwrap();
        store.commit(&key(), &applied).unwrap();
        assert_ne!(std::fs::read_to_string(&snapshot).unwrap(), marked);
        std::fs::write(&snapshot, &marked).unwrap();
        store
            .journal(&key(), &[Confirmed::Removed { key: "[9]".into() }])
            .unwrap();
        let journaled = store.load(&key()).unwrap();
        std::fs::write(&snapshot, &marked).unwrap();
        store.commit(&key(), &journaled).unwrap();
        assert_ne!(std::fs::read_to_string(&snapshot).unwrap(), marked);
        assert!(!store.dir_of(&key()).join("journal").exists());
    }

    #[test]
    fn second_open_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = LocalStateStore::open(dir.path()).unwrap();
        let err = LocalStateStore::open(dir.path()).err().unwrap();
        assert!(
            err.to_string()
                .contains("another dbt-activate run holds the state lock"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_and_newer_snapshots_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let d = store.dir_of(&key());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("snapshot"),
            "dbt-activate state v1\n{}\n0000000000000001 [1]\n",
        )
        .unwrap();
        assert!(
            store
                .load(&key())
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        std::fs::write(d.join("snapshot"), "dbt-activate state v9\n").unwrap();
        assert!(
            store
                .load(&key())
                .unwrap_err()
                .to_string()
                .contains("upgrade dbt-activate")
        );
    }
}

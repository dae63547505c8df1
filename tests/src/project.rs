//! A built copy of `dbt_project_example/` per test.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::{PgDatabase, RunOutput, Webhook, run_with_timeout};

/// Time limit of one dbt or dbt-activate invocation.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variables that would change what dbt or dbt-activate read; the
/// tests set what they need explicitly.
const SCRUBBED_ENV: &[&str] = &[
    "DBT_PROJECT_DIR",
    "DBT_PROFILES_DIR",
    "DBT_TARGET",
    "DBT_TARGET_PATH",
    "DBT_LOG_PATH",
    "DBT_ACTIVATE_STATE_DIR",
    "ACTIVATE_EXAMPLE_DUCKDB",
    "ACTIVATE_PG_URL",
    "ACTIVATE_WEBHOOK_URL",
    "ACTIVATE_WEBHOOK_SECRET",
    "RUST_LOG",
    "DBT_ACTIVATE_IGNORE_SCHEDULE",
    "DBT_ACTIVATE_LOG_FORMAT",
];

/// Files and folders of the example that are build output, not source.
fn is_build_output(name: &str) -> bool {
    matches!(
        name,
        "target" | "logs" | "dbt_packages" | ".dbt-activate" | "synced" | ".user.yml"
    ) || name.ends_with(".duckdb")
        || name.ends_with(".duckdb.wal")
}

/// Copies `from` into `to` (created), skipping top-level entries for which `skip` is true.
fn copy_dir(from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries = fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(&name);
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            copy_dir(&src, &dst, &|_| false);
        } else {
            fs::copy(&src, &dst)
                .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", src.display(), dst.display()));
        }
    }
}

fn dbt_command(project: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(crate::dbt());
    cmd.args(args)
        .arg("--profiles-dir")
        .arg(".")
        .current_dir(project);
    for key in SCRUBBED_ENV {
        cmd.env_remove(key);
    }
    cmd.env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DO_NOT_TRACK", "1")
        .env("DBT_USE_COLORS", "false")
        .env("DBT_PARTIAL_PARSE", "false")
        .env("NO_COLOR", "1");
    cmd
}

/// Removes template folders of test processes that no longer run.
fn remove_stale_templates(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("template-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn build_template() -> Result<PathBuf, String> {
    let base = std::env::temp_dir().join("dbt-activate-e2e");
    remove_stale_templates(&base);
    let dir = base.join(format!("template-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy_dir(
        &crate::repo_root().join("dbt_project_example"),
        &dir,
        &is_build_output,
    );
    let out = run_with_timeout(
        &mut dbt_command(&dir, &["build", "--target", "ci"]),
        TIMEOUT,
    );
    if out.code != 0 {
        return Err(format!(
            "`dbt build --target ci` of the template project failed\n{out}"
        ));
    }
    for needed in [
        "target/manifest.json",
        "target/run_results.json",
        "activate_example.duckdb",
    ] {
        if !dir.join(needed).exists() {
            return Err(format!(
                "`dbt build` did not write {needed} in {}\n{out}",
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// `dbt_project_example/` built once per test binary with `dbt build --target ci`.
pub fn template() -> &'static Path {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(t) = TEMPLATE.get() {
        return t.as_deref().unwrap_or_else(|e| panic!("{e}"));
    }
    let _guard = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    TEMPLATE
        .get_or_init(build_template)
        .as_deref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One test's copy of the built example project, with its own PostgreSQL
/// database and fake webhook.
pub struct Project {
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    cwd: PathBuf,
    pub pg: PgDatabase,
    pub webhook: Webhook,
}

impl Project {
    /// A fresh copy of the built template (with `target/` and the DuckDB file).
    pub fn new() -> Self {
        let template = template();
        let tmp = tempfile::Builder::new()
            .prefix("dbt-activate-e2e-")
            .tempdir()
            .expect("a temporary folder");
        let root = tmp.path().join("project");
        copy_dir(template, &root, &|name| name == "logs");
        // dbt-activate runs from another folder: paths must resolve against --project-dir.
        let cwd = tmp.path().join("elsewhere");
        fs::create_dir_all(&cwd).expect("mkdir");
        let pg = PgDatabase::create();
        let webhook = Webhook::start();
        Self {
            tmp: Some(tmp),
            root,
            cwd,
            pg,
            webhook,
        }
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A path inside the project.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Runs real dbt in the project (`dbt <args> --profiles-dir .`).
    pub fn dbt(&self, args: &[&str]) -> RunOutput {
        run_with_timeout(&mut dbt_command(&self.root, args), TIMEOUT)
    }

    /// Runs real dbt in the project with extra environment variables.
    pub fn dbt_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> RunOutput {
        let mut cmd = dbt_command(&self.root, args);
        cmd.envs(env.iter().copied());
        run_with_timeout(&mut cmd, TIMEOUT)
    }

    /// `dbt build --target ci`, which must succeed.
    #[track_caller]
    pub fn dbt_build(&self) -> RunOutput {
        let out = self.dbt(&["build", "--target", "ci"]);
        out.assert_success();
        out
    }

    #[track_caller]
    pub fn read_file(&self, rel: &str) -> String {
        let path = self.file(rel);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    #[track_caller]
    pub fn write_file(&self, rel: &str, contents: &str) {
        let path = self.file(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Rewrites a file of the project; panics when `edit` changes nothing (a
    /// test editing text that is not there would otherwise prove nothing).
    #[track_caller]
    pub fn edit_file(&self, rel: &str, edit: impl FnOnce(String) -> String) {
        let before = self.read_file(rel);
        let after = edit(before.clone());
        assert_ne!(before, after, "editing {rel} changed nothing");
        self.write_file(rel, &after);
    }

    /// Replaces exactly one occurrence of `from` in a file.
    #[track_caller]
    pub fn replace_in_file(&self, rel: &str, from: &str, to: &str) {
        let text = self.read_file(rel);
        assert_eq!(
            text.matches(from).count(),
            1,
            "{rel} must contain {from:?} exactly once"
        );
        self.write_file(rel, &text.replacen(from, to, 1));
    }

    #[track_caller]
    pub fn remove_file(&self, rel: &str) {
        let path = self.file(rel);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }

    pub fn read_seed(&self, name: &str) -> String {
        self.read_file(&format!("seeds/{name}.csv"))
    }

    pub fn write_seed(&self, name: &str, csv: &str) {
        self.write_file(&format!("seeds/{name}.csv"), csv);
    }

    #[track_caller]
    pub fn edit_seed(&self, name: &str, edit: impl FnOnce(String) -> String) {
        self.edit_file(&format!("seeds/{name}.csv"), edit);
    }

    /// A `dbt-activate` invocation on this project, to add environment to before running.
    ///
    /// Schedules are ignored (`DBT_ACTIVATE_IGNORE_SCHEDULE=true`): the example's syncs are
    /// `every_hour` and the like, and most tests run twice in a row. Tests of schedules
    /// remove the variable with [`ActivateCommand::env_remove`].
    pub fn activate_cmd(&self, args: &[&str]) -> ActivateCommand<'_> {
        self.activate_cmd_with(&crate::binary(), &[], args)
    }

    /// Like [`Project::activate_cmd`], started through `wrapper` (a program and its
    /// arguments, given the binary and `args` after them), e.g. a shell that sets limits.
    pub fn activate_cmd_wrapped(&self, wrapper: &[&str], args: &[&str]) -> ActivateCommand<'_> {
        self.activate_cmd_with(&crate::binary(), wrapper, args)
    }

    /// Like [`Project::activate_cmd`] with another `dbt-activate` (e.g. one installed from the
    /// wheel), optionally started through a wrapper.
    pub fn activate_cmd_with(
        &self,
        binary: &Path,
        wrapper: &[&str],
        args: &[&str],
    ) -> ActivateCommand<'_> {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.args(args)
            .arg("--project-dir")
            .arg(&self.root)
            .current_dir(&self.cwd);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.env("ACTIVATE_PG_URL", self.pg.url())
            .env("ACTIVATE_WEBHOOK_URL", self.webhook.url())
            .env("NO_COLOR", "1")
            .env("DBT_ACTIVATE_IGNORE_SCHEDULE", "true")
            .env("LD_LIBRARY_PATH", crate::ld_library_path());
        ActivateCommand {
            cmd,
            _project: self,
        }
    }

    /// Runs `dbt-activate <args> --project-dir <copy>` with this test's database and webhook.
    pub fn activate(&self, args: &[&str]) -> RunOutput {
        self.activate_cmd(args).run()
    }

    /// `target/activate_results.json`.
    #[track_caller]
    pub fn results_json(&self) -> Value {
        let text = self.read_file("target/activate_results.json");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("activate_results.json is not JSON ({e}):\n{text}"))
    }

    /// The results of the last run, by sync name.
    #[track_caller]
    pub fn results(&self) -> BTreeMap<String, Value> {
        let json = self.results_json();
        let results = json["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no `results` array in {json:#}"));
        results
            .iter()
            .map(|r| {
                (
                    r["name"]
                        .as_str()
                        .unwrap_or_else(|| panic!("a result without a name: {r}"))
                        .to_owned(),
                    r.clone(),
                )
            })
            .collect()
    }

    /// The result of one sync in the last run.
    #[track_caller]
    pub fn result(&self, name: &str) -> Value {
        let results = self.results();
        results.get(name).cloned().unwrap_or_else(|| {
            panic!(
                "no result named {name} in activate_results.json; names: {:?}",
                results.keys()
            )
        })
    }

    /// The names of the syncs in the last run's results.
    pub fn result_names(&self) -> Vec<String> {
        self.results().into_keys().collect()
    }

    /// `synced/<dest>/<object>.jsonl`, one JSON value per line.
    #[track_caller]
    pub fn synced_jsonl(&self, dest: &str, object: &str) -> Vec<Value> {
        let text = self.read_file(&format!("synced/{dest}/{object}.jsonl"));
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// `synced/<dest>/<object>.csv`, one map of header -> field per row.
    #[track_caller]
    pub fn synced_csv(&self, dest: &str, object: &str) -> Vec<BTreeMap<String, String>> {
        let path = self.file(&format!("synced/{dest}/{object}.csv"));
        let mut reader =
            csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers = reader.headers().expect("a CSV header").clone();
        reader
            .records()
            .map(|r| {
                let r = r.expect("a CSV record");
                headers
                    .iter()
                    .map(str::to_owned)
                    .zip(r.iter().map(str::to_owned))
                    .collect()
            })
            .collect()
    }

    /// Files under `synced/` (relative paths), empty when nothing was written.
    pub fn synced_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        let base = self.file("synced");
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Rows of a query on the project's DuckDB file (read-only, through the
    /// venv's Python `duckdb`), every value as text.
    #[track_caller]
    pub fn duck(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        const SCRIPT: &str = r#"
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)
rows = con.execute(sys.argv[2]).fetchall()
print(json.dumps([[None if v is None else str(v) for v in r] for r in rows]))
"#;
        let db = self.file("activate_example.duckdb");
        let mut cmd = Command::new(crate::python());
        cmd.arg("-c").arg(SCRIPT).arg(&db).arg(sql);
        let out = run_with_timeout(&mut cmd, TIMEOUT);
        out.assert_success();
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("duckdb query output is not JSON ({e})\n{out}"))
    }

    /// Rows of a query on this test's PostgreSQL database, every value as text.
    #[track_caller]
    pub fn pg_rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.pg.rows(sql)
    }

    /// Keeps the project folder after the test (see `ACTIVATE_TEST_KEEP`).
    pub fn keep_files(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let kept = tmp.keep();
            eprintln!("kept the project copy in {}", kept.display());
        }
    }
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if crate::keep() {
            self.keep_files();
        }
    }
}

/// A `dbt-activate` command being prepared (see [`Project::activate_cmd`]).
pub struct ActivateCommand<'a> {
    cmd: Command,
    _project: &'a Project,
}

impl ActivateCommand<'_> {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    pub fn run(mut self) -> RunOutput {
        run_with_timeout(&mut self.cmd, TIMEOUT)
    }

    /// Starts the command without waiting, its stdout and stderr going to `log` (for
    /// long-running commands such as `serve`).
    pub fn spawn_logging(mut self, log: &Path) -> std::process::Child {
        let out = fs::File::create(log).expect("create the log file");
        let err = out.try_clone().expect("clone the log file");
        self.cmd
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start dbt-activate")
    }

    /// Starts the command without waiting (for tests that signal it); output is discarded.
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start dbt-activate")
    }
}

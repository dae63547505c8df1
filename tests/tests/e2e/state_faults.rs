//! State faults: a corrupt state file or one from a newer dbt-activate stops the sync with an
//! error naming the file and the fix (never a silent reset); a full disk while journaling or
//! committing leaves the last committed state readable and the next run correct; two runs at
//! once on one project never interleave (the second refuses, naming the lock).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbt_activate_e2e::{Project, Reply, syncs};

use crate::common::*;

fn alerts_only(p: &Project) -> dbt_activate_e2e::RunOutput {
    p.activate(&["run", "--target", "ci", "--select", "churn_alerts"])
}

fn posts(p: &Project) -> usize {
    p.webhook
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// The state file of a sync (`snapshot` or `journal`) under `.dbt-activate/ci/<sync>/`.
fn state_file(p: &Project, sync: &str, name: &str) -> PathBuf {
    let dir = p.file(".dbt-activate/ci").join(sync);
    let mut found: Vec<PathBuf> = files_under(&dir)
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "snapshot"))
        .collect();
    assert_eq!(found.len(), 1, "one snapshot under {}", dir.display());
    found.pop().expect("a snapshot").with_file_name(name)
}

#[track_caller]
fn assert_refused_naming(p: &Project, file: &PathBuf, needles: &[&str]) {
    let before = std::fs::read(file).ok();
    let sent_before = posts(p);
    let out = alerts_only(p);
    assert_ne!(out.code, 0, "a bad state file stops the sync\n{out}");
    let text = out.text();
    assert!(!text.contains("panicked"), "{out}");
    assert!(
        text.contains(&file.display().to_string()),
        "the error names {}\n{out}",
        file.display()
    );
    for needle in needles {
        assert!(text.contains(needle), "the error says {needle:?}\n{out}");
    }
    assert_status(&p.result(syncs::ALERTS), "error");
    assert_eq!(posts(p), sent_before, "nothing is sent on a bad state");
    assert_eq!(
        std::fs::read(file).ok(),
        before,
        "the state file is left as it was (no silent reset)"
    );
}

#[test]
fn corrupt_or_newer_state_stops_the_sync_with_the_file_and_the_fix() {
    let p = Project::new();
    alerts_only(&p).assert_success();
    let snapshot = state_file(&p, syncs::ALERTS, "snapshot");
    let good = std::fs::read_to_string(&snapshot).expect("the snapshot");
    assert!(good.starts_with("dbt-activate state v1\n"), "{good}");

    // Garbage.
    std::fs::write(&snapshot, "{\"not\": \"a state file\"}\n").expect("write");
    assert_refused_naming(&p, &snapshot, &["dbt-activate reset"]);

    // Cut short (no end marker): a torn copy, a full disk outside dbt-activate.
    let cut: String = good.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&snapshot, cut).expect("write");
    assert_refused_naming(&p, &snapshot, &["truncated", "dbt-activate reset"]);

    // Written by a newer dbt-activate.
    std::fs::write(
        &snapshot,
        good.replacen("dbt-activate state v1", "dbt-activate state v99", 1),
    )
    .expect("write");
    assert_refused_naming(&p, &snapshot, &["v99", "upgrade dbt-activate"]);

    // A journal with a line that is not an entry.
    std::fs::write(&snapshot, &good).expect("write");
    let journal = snapshot.with_file_name("journal");
    std::fs::write(&journal, "+00000000000000aa [\"x\"]\nGARBAGE\n").expect("write");
    assert_refused_naming(
        &p,
        &journal,
        &["journal line is malformed", "dbt-activate reset"],
    );

    // Restored: the run goes on from the committed state and sends nothing.
    std::fs::remove_file(&journal).expect("remove the journal");
    let out = alerts_only(&p);
    out.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 0, 0, 0);
}

const BIG_ROWS: u64 = 20_000;

fn add_big_model(p: &Project) {
    p.write_file(
        "models/marts/state_big.sql",
        &format!(
            "select 'k-' || i::varchar as k, i as n,\n\
             case when i < {{{{ var('changed', 0) }}}} then 'v2-' else 'v1-' end || md5(i::varchar) as payload\n\
             from range({BIG_ROWS}) as t(i)\n"
        ),
    );
    p.write_file(
        "models/marts/state_big.yml",
        "version: 2\nmodels:\n  - name: state_big\n    config:\n      meta:\n        activate:\n          \
         destination: crm\n          object: state_big\n          sync_mode: mirror\n          primary_key: k\n",
    );
    p.pg.execute(
        "CREATE TABLE crm.state_big (k text PRIMARY KEY, n bigint NOT NULL, payload text NOT NULL)",
    );
    p.replace_in_file(
        "activate.yml",
        "schema: crm}",
        "schema: crm, batch_size: 1000}",
    );
}

const BIG_SYNC: &str = "state_big__crm__state_big";

fn build_big(p: &Project, changed: u64) {
    p.dbt(&[
        "build",
        "--target",
        "ci",
        "--select",
        "state_big",
        "--vars",
        &format!("{{changed: {changed}}}"),
    ])
    .assert_success();
}

/// `dbt-activate run` on the big model with files limited to `kib` KiB (RLIMIT_FSIZE, with
/// SIGXFSZ ignored so a write past it fails with EFBIG, as on a full disk).
fn run_big_on_a_small_disk(p: &Project, kib: u64) -> dbt_activate_e2e::RunOutput {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\"");
    p.activate_cmd_wrapped(
        &["bash", "-c", &script],
        &["run", "--target", "ci", "--select", "state_big"],
    )
    .run()
}

fn run_big(p: &Project) -> dbt_activate_e2e::RunOutput {
    p.activate(&["run", "--target", "ci", "--select", "state_big"])
}

#[track_caller]
fn assert_big_equals_model(p: &Project) {
    let pg = p.pg.rows(
        "SELECT count(*)::text, md5(string_agg(k || ':' || n || ':' || payload, ',' ORDER BY k)) FROM crm.state_big",
    );
    let duck = p.duck(
        "SELECT count(*)::varchar, md5(string_agg(k || ':' || n || ':' || payload, ',' ORDER BY k)) FROM main.state_big",
    );
    assert_eq!(pg, duck, "postgres holds exactly the model");
}

#[track_caller]
fn assert_snapshot_whole(file: &PathBuf, entries: u64) {
    let text = std::fs::read_to_string(file).expect("the snapshot is readable");
    assert!(text.starts_with("dbt-activate state v1\n"));
    assert!(
        text.ends_with(&format!("end {entries}\n")),
        "the snapshot is whole: {:?}",
        &text[text.len().saturating_sub(40)..]
    );
    let leftovers: Vec<_> = files_under(file.parent().expect("a folder"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn a_full_disk_while_committing_keeps_the_last_state_and_the_next_run_is_correct() {
    let p = Project::new();
    add_big_model(&p);
    build_big(&p, 0);
    run_big(&p).assert_success();
    assert_counts(&p.result(BIG_SYNC), BIG_ROWS, 0, 0);
    let snapshot = state_file(&p, BIG_SYNC, "snapshot");
    let size = std::fs::metadata(&snapshot).expect("snapshot").len();
    let limit_kib = 64;
    assert!(
        size > 4 * limit_kib * 1024,
        "the snapshot ({size} B) is larger than the limit"
    );

    // 1. 300 rows change: their journal fits in 64 KiB, the new snapshot does not.
    build_big(&p, 300);
    let out = run_big_on_a_small_disk(&p, limit_kib);
    assert_ne!(
        out.code, 0,
        "a commit that cannot be written fails the run\n{out}"
    );
    assert!(!out.text().contains("panicked"), "{out}");
    assert!(
        out.text().contains("File too large")
            && out.text().contains(&snapshot.display().to_string()),
        "the error names the state file and the cause\n{out}"
    );
    assert_snapshot_whole(&snapshot, BIG_ROWS);
    assert_big_equals_model(&p);
    // The journal kept the 300 confirmed updates: the next run has nothing to send.
    let out = run_big(&p);
    out.assert_success();
    assert_counts(&p.result(BIG_SYNC), 0, 0, 0);
    assert_big_equals_model(&p);

    // 2. Every row changes: the journal itself fills the disk part-way through the sync.
    build_big(&p, BIG_ROWS);
    let out = run_big_on_a_small_disk(&p, limit_kib);
    assert_ne!(
        out.code, 0,
        "a journal that cannot be written fails the run\n{out}"
    );
    assert!(!out.text().contains("panicked"), "{out}");
    assert!(out.text().contains("File too large"), "{out}");
    assert_snapshot_whole(&snapshot, BIG_ROWS);
    // The next run resends what was not journaled (idempotent upserts) and finishes the job.
    let out = run_big(&p);
    out.assert_success();
    let r = p.result(BIG_SYNC);
    assert_eq!(count(&r, "inserted"), 0, "{r:#}");
    assert!(count(&r, "updated") > 0, "{r:#}");
    assert_eq!(count(&r, "deleted"), 0);
    assert_big_equals_model(&p);
    let out = run_big(&p);
    out.assert_success();
    assert_counts(&p.result(BIG_SYNC), 0, 0, 0);
}

/// A first run is held inside its webhook delivery (the receiver answers only when the test
/// says so) while a second run starts on the same project: the second refuses at once,
/// naming the lock and the first run's pid; the first finishes alone and delivers every row
/// once.
#[test]
fn a_second_run_at_the_same_time_refuses_and_never_interleaves() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let p = Project::new();
    p.replace_in_file(
        "activate.yml",
        "batch_size: 50}",
        "batch_size: 50, timeout_seconds: 300}",
    );
    let arrived = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (a, r) = (Arc::clone(&arrived), Arc::clone(&release));
    p.webhook.respond_with(move |_, req| {
        if req.method == "POST" {
            a.store(true, Ordering::SeqCst);
            let held = Instant::now();
            while !r.load(Ordering::SeqCst) && held.elapsed() < Duration::from_secs(240) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Reply::ok()
    });
    let mut first = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .spawn();
    let started = Instant::now();
    while !arrived.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first run never reached the webhook"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = p.activate(&["run", "--target", "ci"]);
    let still_running = first.try_wait().expect("try_wait").is_none();
    release.store(true, Ordering::SeqCst);
    assert!(still_running, "the first run is held in its delivery");
    assert_ne!(second.code, 0, "the second run refuses\n{second}");
    assert!(
        second
            .text()
            .contains("another dbt-activate run holds the state lock"),
        "{second}"
    );
    assert!(
        second.text().contains(&format!("pid {}", first.id())),
        "the message names the first run's pid\n{second}"
    );
    let status = first.wait().expect("wait");
    assert!(status.success(), "the first run finishes");
    assert_eq!(posts(&p), 1, "only the first run sent anything");
    let r = p.result(syncs::ALERTS);
    assert_counts(&r, 7, 0, 0);
    assert_eq!(
        p.result_names(),
        vec![syncs::ALERTS.to_owned()],
        "the results are the first run's"
    );
    assert!(
        p.pg.count(r#"crm."Lead""#) == 0,
        "the second run synced nothing"
    );
}

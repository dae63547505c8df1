//! `schedule` in meta.activate: `run` runs only the syncs that are due by the start of their
//! last successful run; the others are skipped with the reason and the next due time.
//! "Now" is set with `DBT_ACTIVATE_NOW` (for tests only), so slot boundaries never race.

use dbt_activate_e2e::{Project, Reply, RunOutput, syncs};

use crate::common::*;

/// `dbt-activate <args> --target ci` at `now`, with schedules enforced.
fn at(p: &Project, now: &str, args: &[&str]) -> RunOutput {
    let mut all = args.to_vec();
    all.extend(["--target", "ci"]);
    p.activate_cmd(&all)
        .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
        .env("DBT_ACTIVATE_NOW", now)
        .run()
}

#[test]
fn a_sync_not_due_is_skipped_and_a_due_one_runs() {
    let p = Project::new();
    // Never run: everything is due.
    let out = at(&p, "2026-03-02T10:00:30Z", &["run"]);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");

    // Forget what the leads sync delivered and empty its table: a run of it would resend
    // every lead, so an empty table afterwards proves it did not run.
    p.activate(&["reset", "--target", "ci", "--select", "enriched_leads"])
        .assert_success();
    p.pg.execute(r#"TRUNCATE crm."Lead""#);

    // 20 minutes later: only the every_15_minutes sync (churn_alerts) is due.
    let out = at(&p, "2026-03-02T10:20:00Z", &["run", "--threads", "1"]);
    out.assert_success();
    out.assert_contains("Done. PASS=1 WARN=0 ERROR=0 SKIP=5 TOTAL=6");
    snapshot!("run_with_syncs_not_due", normalised(&p, &out.stderr));
    assert_status(&p.result(syncs::ALERTS), "success");
    for (name, schedule, next) in [
        (syncs::LEADS, "every_hour", "2026-03-02T11:00:00Z"),
        (syncs::CHURN_RISK, "every_hour", "2026-03-02T11:00:00Z"),
        (syncs::LEAD_SCORES, "every_hour", "2026-03-02T11:00:00Z"),
        (syncs::HIGH_VALUE, "every_day", "2026-03-03T00:00:00Z"),
        (syncs::BILLING, "every_day", "2026-03-03T00:00:00Z"),
    ] {
        let r = p.result(name);
        assert_status(&r, "skipped");
        assert_eq!(r["next_due_at"], next, "{r:#}");
        let why = message(&r);
        assert!(
            why.contains("not due")
                && why.contains(schedule)
                && why.contains("2026-03-02t10:00:30z")
                && why.contains(&next.to_lowercase()),
            "the reason names the schedule, the last run and the next due time: {r:#}"
        );
    }
    assert!(
        sync_line(&out, syncs::LEADS).contains("SKIP sync")
            && sync_line(&out, syncs::LEADS).contains("next due 2026-03-02T11:00:00Z"),
        "{out}"
    );
    assert_eq!(
        p.pg.count(r#"crm."Lead""#),
        0,
        "the skipped sync sent nothing"
    );

    // `ls` shows when each sync is next due.
    let out = at(&p, "2026-03-02T10:20:00Z", &["ls"]);
    out.assert_success();
    let line = |name: &str| -> String {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no ls line for {name}\n{out}"))
            .to_owned()
    };
    assert!(
        line(syncs::LEADS).ends_with("2026-03-02T11:00:00Z"),
        "{out}"
    );
    assert!(
        line(syncs::BILLING).ends_with("2026-03-03T00:00:00Z"),
        "{out}"
    );
    assert!(
        line(syncs::ALERTS).ends_with("2026-03-02T10:30:00Z"),
        "{out}"
    );

    // At 11:00 the hourly syncs are due again: the leads land; the daily ones still wait.
    let out = at(&p, "2026-03-02T11:00:00Z", &["run"]);
    out.assert_success();
    out.assert_contains("Done. PASS=4 WARN=0 ERROR=0 SKIP=2 TOTAL=6");
    assert_status(&p.result(syncs::LEADS), "success");
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
    assert_status(&p.result(syncs::BILLING), "skipped");

    // --ignore-schedule runs everything.
    let out = at(&p, "2026-03-02T11:01:00Z", &["run", "--ignore-schedule"]);
    out.assert_success();
    out.assert_contains("Done. PASS=6 WARN=0 ERROR=0 SKIP=0 TOTAL=6");
}

#[test]
fn a_failed_run_does_not_count_and_cron_schedules_are_enforced() {
    let p = Project::new();
    p.replace_in_file(
        "models/marts/schema.yml",
        "          schedule: every_15_minutes",
        "          schedule: cron \"0 9 * * 1-5\"",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    // The webhook fails every request: the alerts sync fails, so it is still due.
    p.webhook
        .respond_with(|_, _| Reply::status(503).header("Retry-After", "0"));
    let out = at(&p, "2026-03-06T09:00:10Z", &["run", "-s", "churn_alerts"]);
    out.assert_code(1);
    p.webhook.respond_with(|_, _| Reply::ok());
    // 2026-03-06 is a Friday: after a success at 09:05 the next slot is Monday 09:00.
    let out = at(&p, "2026-03-06T09:05:00Z", &["run", "-s", "churn_alerts"]);
    out.assert_success();
    assert_status(&p.result(syncs::ALERTS), "success");
    let out = at(&p, "2026-03-08T12:00:00Z", &["run", "-s", "churn_alerts"]);
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "skipped");
    assert_eq!(r["next_due_at"], "2026-03-09T09:00:00Z", "{r:#}");
    let out = at(&p, "2026-03-09T09:00:00Z", &["run", "-s", "churn_alerts"]);
    out.assert_success();
    assert_status(&p.result(syncs::ALERTS), "success");
}

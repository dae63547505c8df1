//! `dbt-activate history`: recent runs per sync from the state store, with rejected rows.

use crate::common::*;
use dbt_activate_e2e::{Project, syncs};

#[test]
fn history_shows_runs_newest_first_with_rejections() {
    let p = Project::new();
    p.pg.execute(
        r#"ALTER TABLE crm."Lead" ADD CONSTRAINT no_northwind CHECK ("Company" <> 'Northwind')"#,
    );
    run_ci(&p).assert_success();
    p.pg.execute(r#"ALTER TABLE crm."Lead" DROP CONSTRAINT no_northwind"#);
    run_ci(&p).assert_success();

    let out = p.activate(&["history", "--target", "ci", "--select", "enriched_leads"]);
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("{}:", syncs::LEADS), "{out}");
    // Newest first: the retry that landed the rejected row, then the first run.
    assert!(
        lines[1].contains("success") && lines[1].contains("+1 ~0 -0, 0 rejected"),
        "{out}"
    );
    assert!(
        lines[2].contains("warn") && lines[2].contains("+29 ~0 -0, 1 rejected"),
        "{out}"
    );
    assert!(
        lines[3].contains("rejected [\"ava.martin@northwind.io\"]")
            && lines[3].contains("no_northwind"),
        "{out}"
    );
    out.assert_contains("2 runs of 1 sync (target ci)");

    let out = p.activate(&[
        "history",
        "--target",
        "ci",
        "--select",
        "churn_alerts",
        "--limit",
        "1",
    ]);
    out.assert_success();
    out.assert_contains("1 run of 1 sync");
}

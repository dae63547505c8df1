//! SIGKILL at arbitrary points during a 100,000-row sync, again and again: every confirmed
//! batch is in the state journal, so each next run sends only what was not confirmed, and a
//! final normal run leaves the destination equal to the model — nothing lost, nothing doubled.

use crate::common::*;
use dbt_activate_e2e::Project;

const ROWS: i64 = 100_000;

/// `big_accounts`: 100,000 rows mirrored to `destination` (a dbt model of the example).
fn write_big_model(p: &Project, destination: &str) {
    p.write_file(
        "models/marts/big_accounts.sql",
        &format!(
            "select 'acct-' || i::varchar as account_key, i as n, md5(i::varchar) as payload\n\
             from range({ROWS}) as t(i)\n"
        ),
    );
    p.write_file(
        "models/marts/big_accounts.yml",
        &format!(
            "version: 2\nmodels:\n  - name: big_accounts\n    config:\n      meta:\n        activate:\n          \
             destination: {destination}\n          object: big_accounts\n          sync_mode: mirror\n          \
             primary_key: account_key\n"
        ),
    );
}

fn add_big_model(p: &Project) {
    write_big_model(p, "crm");
    p.pg.execute(
        "CREATE TABLE crm.big_accounts (account_key text PRIMARY KEY, n bigint NOT NULL, payload text NOT NULL)",
    );
    p.dbt(&["build", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
}

#[test]
fn killed_runs_lose_nothing_and_double_nothing() {
    let p = Project::new();
    add_big_model(&p);
    // Smaller batches: more boundaries for a kill to fall between or inside.
    p.replace_in_file(
        "activate.yml",
        "schema: crm}",
        "schema: crm, batch_size: 2000}",
    );
    let run = || {
        p.activate_cmd(&["run", "--target", "ci", "--select", "big_accounts"])
            .spawn()
    };

    // How long a whole sync takes here, so the kills land inside it on any machine.
    let started = std::time::Instant::now();
    let status = run().wait().expect("wait");
    assert!(status.success());
    let whole = started.elapsed();
    p.activate(&["reset", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
    p.pg.execute("TRUNCATE crm.big_accounts");

    // 20 kills at 5%, 10%, ... 100% of that time, each followed by the next run.
    let mut partial = 0;
    for step in 1..=20u32 {
        let mut child = run();
        std::thread::sleep(whole.mul_f64(f64::from(step) * 0.05));
        let _ = child.kill(); // SIGKILL; the run may have finished by now
        let _ = child.wait();
        let landed = p.pg.count("crm.big_accounts");
        if landed > 0 && landed < ROWS {
            partial += 1;
        }
    }
    let landed_before_final = p.pg.count("crm.big_accounts");
    eprintln!(
        "kills that left a partial sync: {partial}; rows landed before the final run: {landed_before_final}"
    );

    let out = p.activate(&["run", "--target", "ci", "--select", "big_accounts"]);
    out.assert_success();
    let r = p.result("big_accounts__crm__big_accounts");
    assert_status(&r, "success");
    // The final run sends what the killed runs had not got confirmed. (A batch the database
    // committed just before a kill, but the journal did not record, is upserted again:
    // idempotent, so it counts as an update.)
    let sent = count(&r, "inserted") + count(&r, "updated");
    assert!(
        sent as i64 >= ROWS - landed_before_final,
        "the final run sends at least the missing rows: {r:#}"
    );
    assert_eq!(count(&r, "deleted"), 0);

    // The destination equals the model, row for row.
    assert_eq!(p.pg.count("crm.big_accounts"), ROWS);
    let pg = p.pg.rows(
        "SELECT count(DISTINCT account_key)::text, sum(n)::text, md5(string_agg(account_key || ':' || n || ':' || payload, ',' ORDER BY account_key)) FROM crm.big_accounts",
    );
    let duck = p.duck(
        "SELECT count(DISTINCT account_key)::varchar, sum(n)::varchar, md5(string_agg(account_key || ':' || n || ':' || payload, ',' ORDER BY account_key)) FROM main.big_accounts",
    );
    assert_eq!(pg, duck, "postgres holds exactly the model");

    // A rerun sends nothing: the state agrees with the destination.
    p.activate(&["run", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
    assert_counts(&p.result("big_accounts__crm__big_accounts"), 0, 0, 0);
}

/// The same 20 kills against a stateful HTTP receiver: the webhook fake's accepted requests,
/// applied in order (upsert by key, delete by key), are what a receiving system holds.
#[test]
fn killed_runs_to_an_http_receiver_lose_nothing_and_double_nothing() {
    use std::collections::BTreeMap;

    let p = Project::new();
    write_big_model(&p, "alerts");
    p.dbt(&["build", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
    p.replace_in_file("activate.yml", "batch_size: 50}", "batch_size: 2000}");
    // Each answer takes a little while, as a real receiver's would: kills land mid-sync.
    p.webhook.respond_with(|_, _| {
        std::thread::sleep(std::time::Duration::from_millis(15));
        dbt_activate_e2e::Reply::ok()
    });
    let run = || {
        p.activate_cmd(&["run", "--target", "ci", "--select", "big_accounts"])
            .spawn()
    };
    let started = std::time::Instant::now();
    assert!(run().wait().expect("wait").success());
    let whole = started.elapsed();
    p.activate(&["reset", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
    let first_sync_requests = p.webhook.request_count();

    for step in 1..=20u32 {
        let mut child = run();
        std::thread::sleep(whole.mul_f64(f64::from(step) * 0.05));
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = p.activate(&["run", "--target", "ci", "--select", "big_accounts"]);
    out.assert_success();
    assert_status(&p.result("big_accounts__alerts__big_accounts"), "success");

    // What the receiver holds: every accepted request after the reset, applied in order.
    let mut held: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for request in p.webhook.requests().iter().skip(first_sync_requests) {
        if !request.accepted() {
            continue;
        }
        let body = request.json();
        for record in body["records"].as_array().expect("records") {
            let key = record["account_key"].as_str().expect("key").to_owned();
            match body["operation"].as_str() {
                Some("delete") => {
                    held.remove(&key);
                }
                _ => {
                    held.insert(
                        key,
                        (
                            record["n"].as_i64().expect("n"),
                            record["payload"].as_str().expect("payload").to_owned(),
                        ),
                    );
                }
            }
        }
    }
    assert_eq!(held.len() as i64, ROWS, "every key held once");
    let model: BTreeMap<String, (i64, String)> = p
        .duck("select account_key, n::varchar, payload from main.big_accounts")
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                (
                    r[1].as_deref().unwrap_or("0").parse().expect("n"),
                    r[2].clone().unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert!(held == model, "the receiver holds exactly the model");

    // A rerun sends nothing: the state agrees with what the receiver took.
    let before = p.webhook.request_count();
    p.activate(&["run", "--target", "ci", "--select", "big_accounts"])
        .assert_success();
    assert_counts(&p.result("big_accounts__alerts__big_accounts"), 0, 0, 0);
    assert_eq!(p.webhook.request_count(), before, "nothing sent");
}

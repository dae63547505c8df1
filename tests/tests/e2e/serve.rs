//! `dbt-activate serve`: runs due syncs on their schedules, starts the syncs of the models a
//! new run_results.json shows rebuilt within seconds of a real `dbt build`, serves /healthz and
//! Prometheus /metrics on loopback, and stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use dbt_activate_e2e::Project;

use crate::common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on loopback: (status, body), or None when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// Sends SIGTERM and waits (at most 30 s) for the exit code.
fn stop_with_sigterm(child: &mut std::process::Child) -> Option<i32> {
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut status = None;
    wait_until(Duration::from_secs(30), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status.and_then(|s| s.code())
}

fn metrics(port: u16) -> String {
    get(port, "/metrics").map(|(_, b)| b).unwrap_or_default()
}

#[test]
fn serve_runs_due_syncs_triggers_on_a_new_dbt_build_and_stops_on_sigterm() {
    let p = Project::new();
    let port = free_port();
    let log = p.path().join("serve.log");
    let mut child = p
        .activate_cmd(&[
            "serve",
            "--target",
            "ci",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-seconds",
            "1",
        ])
        .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
        .spawn_logging(&log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    assert!(
        wait_until(Duration::from_secs(60), || get(port, "/healthz")
            .is_some_and(|(s, b)| s == 200 && b.contains("\"status\":\"ok\""))),
        "healthz answers:\n{}",
        log_text()
    );
    assert_eq!(get(port, "/nope").map(|(s, _)| s), Some(404));

    // Nothing ran yet, so every scheduled sync is due: one run sends them all.
    assert!(
        wait_until(Duration::from_secs(120), || metrics(port).contains(
            "dbt_activate_runs_total{trigger=\"schedule\",exit_code=\"0\"} 1"
        )),
        "a scheduled run:\n{}\n{}",
        metrics(port),
        log_text()
    );
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
    let m = metrics(port);
    assert!(
        m.contains("dbt_activate_sync_rows_total{sync=\"enriched_leads__crm__Lead\",change=\"inserted\"} 30"),
        "{m}"
    );
    assert!(m.contains(
        "dbt_activate_sync_last_run_status{sync=\"enriched_leads__crm__Lead\",status=\"success\"} 1"
    ));

    // A dbt build (by any means) with one more lead: its sync starts within seconds.
    p.edit_seed("leads", |csv| {
        format!("{csv}zoe.new@example.com,Newco,Zoe,New,US,2025-03-01 10:00:00\n")
    });
    p.dbt_build();
    let built = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || leads_in_postgres(&p)
            == leads_in_model(&p)),
        "the new lead lands after the build:\n{}",
        log_text()
    );
    eprintln!("synced {:?} after dbt build returned", built.elapsed());
    assert!(
        wait_until(Duration::from_secs(10), || metrics(port).contains(
            "dbt_activate_runs_total{trigger=\"run_results\",exit_code=\"0\"} 1"
        )),
        "{}",
        metrics(port)
    );
    assert!(log_text().contains("run_results.json shows their models rebuilt"));

    // SIGTERM: serve stops and exits 0.
    assert_eq!(
        stop_with_sigterm(&mut child),
        Some(0),
        "serve exits 0 on SIGTERM:\n{}",
        log_text()
    );
    assert!(log_text().contains("Stopped"));
}

#[test]
fn sigterm_during_a_served_sync_keeps_state_consistent_and_the_next_run_finishes_it() {
    let p = Project::new();
    // One alert per request, each answered slowly: the served run is sending when signalled.
    p.replace_in_file("activate.yml", "batch_size: 50}", "batch_size: 1}");
    p.webhook.respond_with(|_, _| {
        std::thread::sleep(Duration::from_millis(400));
        dbt_activate_e2e::Reply::ok()
    });
    let port = free_port();
    let log = p.path().join("serve.log");
    let mut child = p
        .activate_cmd(&[
            "serve",
            "--target",
            "ci",
            "--select",
            "churn_alerts",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-seconds",
            "1",
        ])
        .env_remove("DBT_ACTIVATE_IGNORE_SCHEDULE")
        .spawn_logging(&log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(90), || p.webhook.request_count() >= 2),
        "the served sync started sending:\n{}",
        log_text()
    );
    assert_eq!(
        stop_with_sigterm(&mut child),
        Some(0),
        "serve exits 0 on SIGTERM:\n{}",
        log_text()
    );

    let r = p.result(dbt_activate_e2e::syncs::ALERTS);
    assert_status(&r, "error");
    assert!(message(&r).contains("stopped by a signal"), "{r:#}");
    let first = count(&r, "inserted");
    assert!((1..7).contains(&first), "some but not all alerts: {r:#}");
    assert_eq!(p.webhook.accepted_records().len() as u64, first);

    // The next run sends exactly the rest.
    p.webhook.respond_with(|_, _| dbt_activate_e2e::Reply::ok());
    p.activate(&["run", "--target", "ci", "--select", "churn_alerts"])
        .assert_success();
    assert_eq!(
        alerts_from_records(&p.webhook.accepted_records()),
        alerts_in_model(&p),
        "every alert exactly once"
    );
}

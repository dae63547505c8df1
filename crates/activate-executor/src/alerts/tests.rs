use super::*;

fn rules() -> AlertRules {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str("send_to: [ops]").expect("yaml");
    AlertRules::parse(&yaml, &destinations(), "activate.yml").expect("rules")
}

fn destinations() -> BTreeMap<String, DestinationConfig> {
    let mut map = BTreeMap::new();
    for (name, kind) in [("ops", "slack"), ("hook", "webhook"), ("crm", "postgres")] {
        map.insert(
            name.to_owned(),
            DestinationConfig {
                name: name.to_owned(),
                kind: kind.to_owned(),
                settings: serde_json::Map::new(),
                file: "activate.yml".into(),
            },
        );
    }
    map
}

fn result(status: Status, rows_read: u64, changes: u64, rejected: u64) -> SyncResult {
    SyncResult {
        unique_id: "sync.p.leads".into(),
        name: "leads".into(),
        model: "model.p.leads".into(),
        destination: "crm".into(),
        object: "Lead".into(),
        sync_mode: "mirror".into(),
        status,
        message: String::new(),
        inserted: changes,
        updated: 0,
        deleted: 0,
        cleared: 0,
        rejected,
        skipped_rows: 0,
        rows_read,
        unchanged: rows_read.saturating_sub(changes),
        rejections: Vec::new(),
        execution_time: 0.1,
        warehouse_time: 0.0,
        destination_time: 0.0,
        engine_time: 0.1,
        samples: Vec::new(),
        next_due_at: None,
        up_to_date_since: None,
        computed_plan: None,
    }
}

fn history(rows: &[u64]) -> Vec<PastRun> {
    rows.iter()
        .map(|&r| PastRun {
            status: "success".into(),
            rows_read: r,
            changes: 20,
        })
        .collect()
}

#[test]
fn defaults_and_every_key_parse() {
    let r = rules();
    assert_eq!(r.rejected_share_above, Some(0.05));
    assert_eq!(r.row_count_deviation_above, Some(0.5));
    assert!(r.sync_failed && r.circuit_breaker);
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        "send_to: [{destination: ops, channel: data-alerts}, hook]\nsync_failed: false\nrejected_share_above: 1%\nrow_count_deviation_above: 0.2\nchanges_deviation_above: off\nmin_changes: 5\nlookback_runs: 4\nmin_history: 2",
    )
    .unwrap();
    let r = AlertRules::parse(&yaml, &destinations(), "activate.yml").unwrap();
    assert_eq!(
        r.send_to,
        vec![
            AlertTarget {
                destination: "ops".into(),
                channel: Some("data-alerts".into())
            },
            AlertTarget {
                destination: "hook".into(),
                channel: None
            }
        ]
    );
    assert!(!r.sync_failed);
    assert_eq!(r.rejected_share_above, Some(0.01));
    assert_eq!(r.row_count_deviation_above, Some(0.2));
    assert_eq!(r.changes_deviation_above, None);
    assert_eq!((r.min_changes, r.lookback_runs, r.min_history), (5, 4, 2));
}

#[test]
fn bad_alert_settings_name_the_key_and_the_fix() {
    let parse = |text: &str| {
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        AlertRules::parse(&yaml, &destinations(), "activate.yml").unwrap_err()
    };
    let e = parse("send_to: [opps]");
    assert!(e.message.contains("`opps`"), "{}", e.message);
    assert_eq!(e.hint.as_deref(), Some("did you mean `ops`?"));
    let e = parse("send_to: [crm]");
    assert!(e.message.contains("postgres destination"), "{}", e.message);
    let e = parse("send_to: [ops]\nrejected_share: 5%");
    assert!(e.message.contains("unknown key `rejected_share`"));
    assert!(e.hint.unwrap().contains("rejected_share_above"));
    let e = parse("send_to: [ops]\nrow_count_deviation_above: lots");
    assert!(
        e.message.contains("row_count_deviation_above"),
        "{}",
        e.message
    );
    let e = parse("sync_failed: true");
    assert!(e.message.contains("send_to"), "{}", e.message);
}

#[test]
fn a_data_drop_alerts_and_normal_variation_does_not() {
    let r = rules();
    let past = history(&[1000, 1040, 980, 1010, 995]);
    // 10% variation: quiet.
    assert!(evaluate(&r, &result(Status::Success, 1100, 20, 0), &past, true).is_empty());
    assert!(evaluate(&r, &result(Status::Success, 905, 20, 0), &past, true).is_empty());
    // A drop to 30%: one alert, saying what was seen and expected.
    let alerts = evaluate(&r, &result(Status::Success, 300, 20, 0), &past, true);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "row_count_anomaly");
    assert!(alerts[0].seen.contains("300 rows"), "{}", alerts[0].seen);
    assert!(
        alerts[0].seen.contains("dropped by 70%"),
        "{}",
        alerts[0].seen
    );
    assert!(
        alerts[0].expected.contains("within 50% of 1000 rows"),
        "{}",
        alerts[0].expected
    );
    // Cursor syncs read only new rows: their count says nothing about the model.
    assert!(evaluate(&r, &result(Status::Success, 300, 20, 0), &past, false).is_empty());
    // Too little history: quiet.
    assert!(evaluate(&r, &result(Status::Success, 300, 20, 0), &past[..2], true).is_empty());
}

#[test]
fn an_up_to_date_sync_is_no_drop_and_does_not_count_as_a_read() {
    let r = rules();
    let past = history(&[1000, 1040, 980, 1010, 995]);
    // Nothing was read (0 rows), because the model was not rebuilt: no alert.
    let mut up_to_date = result(Status::Success, 0, 0, 0);
    up_to_date.up_to_date_since = Some("2026-11-25T10:00:00Z".into());
    assert!(evaluate(&r, &up_to_date, &past, true).is_empty());
    // A real read of 0 rows still alerts.
    assert_eq!(
        evaluate(&r, &result(Status::Success, 0, 0, 0), &past, true).len(),
        1
    );
    // In the history, up-to-date runs are not reads of 0 rows: five of them leave the median
    // of the real reads, and a normal read stays quiet.
    let mut record = serde_json::to_value(&up_to_date).expect("json");
    record["status"] = "success".into();
    let mut mixed = past.clone();
    mixed.extend((0..5).map(|_| PastRun::from_history(&record)));
    assert_eq!(mixed[5].status, "up_to_date");
    assert!(evaluate(&r, &result(Status::Success, 1000, 20, 0), &mixed, true).is_empty());
}

#[test]
fn a_spike_of_changes_alerts_only_above_the_floor() {
    let r = rules();
    let past = history(&[1000, 1000, 1000]);
    assert!(evaluate(&r, &result(Status::Success, 1000, 79, 0), &past, true).is_empty());
    // 90 changes is 4.5x the median of 20, but under min_changes (100): quiet.
    assert!(evaluate(&r, &result(Status::Success, 1000, 90, 0), &past, true).is_empty());
    let alerts = evaluate(&r, &result(Status::Success, 1000, 500, 0), &past, true);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, "changes_anomaly");
    assert!(
        alerts[0]
            .seen
            .contains("500 rows changed, against a median of 20")
    );
}

#[test]
fn failures_breakers_and_rejects_alert_with_what_to_do() {
    let r = rules();
    let mut failed = result(Status::Error, 0, 0, 0);
    failed.message = "destination crm: connection refused\n  hint: start the database".into();
    let a = evaluate(&r, &failed, &[], true);
    assert_eq!(a[0].kind, "sync_failed");
    assert_eq!(a[0].seen, "destination crm: connection refused");
    assert_eq!(a[0].action, "start the database");

    let mut tripped = result(Status::Error, 0, 0, 0);
    tripped.message = "circuit breaker max_deletes tripped: the plan removes 60 of the 100 rows\n  hint: raise limits.max_deletes".into();
    let a = evaluate(&r, &tripped, &[], true);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].kind, "circuit_breaker");

    let mut rejecting = result(Status::Warn, 100, 90, 10);
    rejecting.rejections.push(crate::results::RowRejection {
        key: "a@x.com".into(),
        reason: "INVALID_EMAIL_ADDRESS".into(),
    });
    let a = evaluate(&r, &rejecting, &[], true);
    assert_eq!(a[0].kind, "rejected_rows");
    assert!(
        a[0].seen
            .contains("10 of 100 rows sent were rejected (10%)"),
        "{}",
        a[0].seen
    );
    assert!(a[0].seen.contains("INVALID_EMAIL_ADDRESS"));
    // Under the threshold: quiet. Skipped syncs: quiet.
    assert!(evaluate(&r, &result(Status::Warn, 100, 99, 1), &[], true).is_empty());
    assert!(evaluate(&r, &result(Status::Skipped, 0, 0, 0), &[], true).is_empty());
}

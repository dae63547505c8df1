//! `alerts:` in activate.yml end to end: a seeded data drop reaches a Slack-compatible fake
//! with what was seen, what was expected and what to do; normal variation stays quiet; a
//! failed sync reaches a webhook as JSON.

use dbt_activate_e2e::fakes::slack::FakeSlack;
use dbt_activate_e2e::{Project, Reply, RunOutput};

const TOKEN: &str = "xoxb-3333-4444-e2eAlertsTokenZ9";
const CHANNEL: &str = "data-alerts";

fn write_activate_yml(p: &Project, extra_destinations: &str, alerts: &str) {
    p.write_file(
        "activate.yml",
        &format!(
            "destinations:
  crm: {{type: file, path: synced/crm}}
  cs_tool: {{type: file, path: synced/cs_tool}}
  marketing: {{type: file, path: synced/marketing, format: csv}}
  billing: {{type: file, path: synced/billing}}
  alerts: {{type: file, path: synced/alerts}}
  ops:
    type: slack
    token: \"{{{{ env_var('SLACK_BOT_TOKEN') }}}}\"
    base_url: \"{{{{ env_var('SLACK_API_URL') }}}}\"
{extra_destinations}alerts:
{alerts}"
        ),
    );
}

fn leads_run(p: &Project, slack: &FakeSlack) -> RunOutput {
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--select", "enriched_leads"])
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_API_URL", &slack.api_url())
        .run();
    out.assert_success();
    out
}

/// Keeps the header and the first `n` leads of the seed, then rebuilds.
fn keep_leads(p: &Project, n: usize) {
    p.edit_seed("leads", |csv| {
        csv.lines().take(n + 1).map(|l| format!("{l}\n")).collect()
    });
    p.dbt_build();
}

#[test]
fn a_seeded_data_drop_alerts_slack_and_normal_variation_does_not() {
    let p = Project::new();
    let slack = FakeSlack::start(TOKEN);
    slack.add_channel(CHANNEL);
    write_activate_yml(
        &p,
        "",
        "  send_to: [{destination: ops, channel: data-alerts}]\n  row_count_deviation_above: 50%\n  min_history: 3\n",
    );
    // Three runs of the 30 leads make the history.
    for _ in 0..3 {
        leads_run(&p, &slack);
    }
    assert!(slack.messages(CHANNEL).is_empty(), "nothing to say yet");

    // Normal variation: 27 of 30 leads (10% fewer).
    keep_leads(&p, 27);
    leads_run(&p, &slack);
    assert!(
        slack.messages(CHANNEL).is_empty(),
        "10% fewer rows is normal variation: {:?}",
        slack.messages(CHANNEL)
    );

    // A data drop: 6 leads left.
    keep_leads(&p, 6);
    let out = leads_run(&p, &slack);
    out.assert_contains("Alert: sync `enriched_leads__crm__Lead`");
    let messages = slack.messages(CHANNEL);
    assert_eq!(messages.len(), 1, "one message per run: {messages:?}");
    let text = &messages[0].text;
    for needle in [
        "dbt-activate: 1 alert in run",
        "(target ci)",
        "sync `enriched_leads__crm__Lead` (model.activate_example.enriched_leads): row count anomaly",
        "seen: the model returned 6 rows: it dropped by 80% against the median of its last 4 runs (30)",
        "expected: within 50% of 30 rows",
        "what to do: check the model and its sources",
    ] {
        assert!(text.contains(needle), "`{needle}` in:\n{text}");
    }
    assert!(!text.contains(TOKEN) && !out.text().contains(TOKEN));
}

#[test]
fn a_failed_sync_alerts_a_webhook_with_json() {
    let p = Project::new();
    let slack = FakeSlack::start(TOKEN);
    // The churn alerts' own destination refuses everything, so that sync fails.
    let broken = dbt_activate_e2e::Webhook::start();
    broken.respond_with(|_, _| Reply::status(500));
    let hook_url = p.webhook.url().to_owned();
    write_activate_yml(
        &p,
        &format!("  hook: {{type: webhook, url: \"{hook_url}\"}}\n"),
        "  send_to: [hook]\n",
    );
    p.replace_in_file(
        "activate.yml",
        "  alerts: {type: file, path: synced/alerts}",
        &format!(
            "  alerts: {{type: webhook, url: \"{}\", max_retries: 0}}",
            broken.url()
        ),
    );
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_API_URL", &slack.api_url())
        .run();
    out.assert_code(1);
    let requests = p.webhook.requests();
    assert_eq!(requests.len(), 1, "one alert document");
    assert_eq!(requests[0].header("x-activate-event"), Some("alerts"));
    let doc = requests[0].json();
    assert_eq!(doc["event"], "dbt_activate.alerts");
    assert_eq!(doc["target"], "ci");
    let alert = &doc["alerts"][0];
    assert_eq!(alert["kind"], "sync_failed");
    assert_eq!(alert["sync"], "churn_alerts__alerts__cs_alerts");
    assert!(
        alert["seen"].as_str().unwrap().contains("500"),
        "the destination's answer: {alert}"
    );
    assert!(!alert["action"].as_str().unwrap().is_empty());
}

//! The slack destination end to end: the example's `churn_alerts` (alert_id, message -> text,
//! account_name -> account, churn_risk_score -> score; insert into `cs-alerts`) posted to a
//! fake Slack workspace by the real binary, through chat.postMessage and an incoming webhook.

use std::time::Duration;

use dbt_activate_e2e::fakes::slack::{FakeSlack, Message};
use dbt_activate_e2e::{ActivateCommand, Project, sorted, syncs};
use serde_json::Value;

use crate::common::*;

const TOKEN: &str = "xoxb-1111-2222-e2eSlackTokenQ7w";
const CHANNEL: &str = "cs-alerts";

/// `activate.yml` with the example's file destinations and `alerts` set to `slack_yaml`.
fn write_activate_yml(p: &Project, slack_yaml: &str) {
    p.write_file(
        "activate.yml",
        &format!(
            "destinations:\n  crm: {{type: file, path: synced/crm}}\n  cs_tool: {{type: file, path: synced/cs_tool}}\n  marketing: {{type: file, path: synced/marketing, format: csv}}\n  billing: {{type: file, path: synced/billing}}\n  alerts:\n{slack_yaml}"
        ),
    );
}

fn bot_yml(extra: &str) -> String {
    format!(
        "    type: slack\n    token: \"{{{{ env_var('SLACK_BOT_TOKEN') }}}}\"\n    base_url: \"{{{{ env_var('SLACK_API_URL') }}}}\"\n{extra}"
    )
}

fn alerts_run<'a>(p: &'a Project, slack: &FakeSlack) -> ActivateCommand<'a> {
    p.activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_API_URL", &slack.api_url())
}

fn workspace() -> FakeSlack {
    let slack = FakeSlack::start(TOKEN);
    slack.add_channel(CHANNEL);
    slack
}

/// The model's alert messages, sorted.
fn model_messages(p: &Project) -> Vec<String> {
    sorted(
        p.duck("select message from main.churn_alerts")
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect(),
    )
}

fn texts(messages: &[Message]) -> Vec<String> {
    sorted(messages.iter().map(|m| m.text.clone()).collect())
}

/// No post went faster than one per second per channel, and the fake answered no 429.
#[track_caller]
fn assert_paced(slack: &FakeSlack, messages: &[Message]) {
    for pair in messages.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(950),
            "two messages {gap:?} apart in #{CHANNEL}"
        );
    }
    assert_eq!(slack.rate_limited(), 0, "the client kept to the limit");
}

fn posts(slack: &FakeSlack) -> usize {
    slack
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("chat.postMessage") || r.path.starts_with("/services/"))
        .count()
}

#[test]
fn slack_posts_one_message_per_alert_once_paced_and_without_leaking_the_token() {
    let p = Project::new();
    let slack = workspace();
    write_activate_yml(&p, &bot_yml(""));
    let first = alerts_run(&p, &slack).run();
    first.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);

    let messages = slack.messages(CHANNEL);
    assert_eq!(texts(&messages), model_messages(&p));
    assert!(
        messages
            .iter()
            .all(|m| m.via == "bot" && m.blocks.is_none())
    );
    assert_paced(&slack, &messages);
    for req in slack.requests() {
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let body = req.json();
        assert_eq!(body["channel"], CHANNEL);
    }

    // A rerun sends nothing: every alert was posted once.
    let before = slack.requests().len();
    let second = alerts_run(&p, &slack).run();
    second.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 0, 0, 0);
    assert_eq!(slack.requests().len(), before, "a rerun sends nothing");
    assert_eq!(slack.messages(CHANNEL).len(), 7);

    // `debug` checks the token with auth.test.
    let debug = p
        .activate_cmd(&["debug", "--target", "ci"])
        .env("SLACK_BOT_TOKEN", TOKEN)
        .env("SLACK_API_URL", &slack.api_url())
        .run();
    assert!(
        slack.requests().iter().any(|r| r.path == "/api/auth.test"),
        "{debug}"
    );
    assert_secrets_never_written(&p, &[&first, &second, &debug], &[TOKEN]);
}

#[test]
fn slack_incoming_webhook_posts_templated_text_and_blocks() {
    let p = Project::new();
    let slack = workspace();
    let hook = slack.add_webhook(CHANNEL);
    let hook_secret = hook.rsplit('/').next().expect("a secret part").to_owned();
    write_activate_yml(
        &p,
        r#"    type: slack
    webhook_url: "{{ env_var('SLACK_WEBHOOK_URL') }}"
    text_template: "{% raw %}{{ account }} is at risk ({{ score }}){% endraw %}"
    blocks_template:
      - type: header
        text: {type: plain_text, text: "{% raw %}Churn risk: {{ account }}{% endraw %}"}
      - type: section
        text: {type: mrkdwn, text: "{% raw %}{{ text }}{% endraw %}"}
      - type: context
        elements: [{type: mrkdwn, text: "{% raw %}alert {{ alert_id }}{% endraw %}"}]
"#,
    );
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .env("SLACK_WEBHOOK_URL", &hook)
        .run();
    out.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 7, 0, 0);

    let messages = slack.messages(CHANNEL);
    assert_paced(&slack, &messages);
    let rows = p.duck(
        "select alert_id, message, account_name, cast(churn_risk_score as double)::varchar from main.churn_alerts",
    );
    let mut expected: Vec<(String, Value)> = rows
        .iter()
        .map(|r| {
            let [id, message, account, score] = [0, 1, 2, 3].map(|i| r[i].clone().unwrap_or_default());
            (
                format!("{account} is at risk ({score})"),
                serde_json::json!([
                    {"type": "header", "text": {"type": "plain_text", "text": format!("Churn risk: {account}")}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": message}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("alert {id}")}]},
                ]),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let mut got: Vec<(String, Value)> = messages
        .iter()
        .map(|m| {
            assert_eq!(m.via, "webhook");
            (m.text.clone(), m.blocks.clone().unwrap_or_default())
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);
    // The webhook URL is the credential.
    assert_secrets_never_written(&p, &[&out], &[&hook_secret]);
}

#[test]
fn slack_digest_posts_one_message_per_batch() {
    let p = Project::new();
    let slack = workspace();
    write_activate_yml(
        &p,
        &bot_yml(
            "    message_mode: digest\n    batch_size: 3\n    digest_title: \"{% raw %}{{ count }} accounts at risk{% endraw %}\"\n",
        ),
    );
    alerts_run(&p, &slack).run().assert_success();
    assert_counts(&p.result(syncs::ALERTS), 7, 0, 0);
    let messages = slack.messages(CHANNEL);
    assert_eq!(messages.len(), 3, "7 rows in digests of at most 3");
    assert_paced(&slack, &messages);
    let mut listed = Vec::new();
    for m in &messages {
        let blocks = m.blocks.as_ref().and_then(Value::as_array).expect("blocks");
        let rows = blocks.len() - 2;
        assert!((1..=3).contains(&rows));
        assert_eq!(
            blocks[0]["text"]["text"],
            format!("{rows} accounts at risk"),
            "the header counts the rows"
        );
        for b in &blocks[1..=rows] {
            listed.push(b["text"]["text"].as_str().expect("section text").to_owned());
        }
        assert!(m.text.starts_with(&format!("{rows} accounts at risk\n")));
    }
    assert_eq!(
        sorted(listed),
        model_messages(&p),
        "each alert in exactly one digest"
    );
}

#[test]
fn slack_invalid_blocks_are_rejected_per_row_and_retried_next_run() {
    let p = Project::new();
    let slack = workspace();
    // A layout being written: rows above 0.85 get an image block without its image.
    let layout = |image: &str| {
        bot_yml(&format!(
            "    blocks_template: '{{% raw %}}[{{\"type\": \"section\", \"text\": {{\"type\": \"mrkdwn\", \"text\": {{{{ text | tojson }}}}}}}}{{% if score > 0.85 %}}{image}{{% endif %}}]{{% endraw %}}'\n"
        ))
    };
    write_activate_yml(
        &p,
        &layout(r#", {"type": "image", "alt_text": "risk chart"}"#),
    );
    let out = alerts_run(&p, &slack).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 2, "{r:#}");
    assert_counts(&r, 5, 0, 0);
    let rejections = r["rejections"].as_array().expect("rejections");
    let mut keys: Vec<Value> = rejections.iter().map(rejection_key).collect();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(
        keys,
        vec![
            serde_json::json!(["churn-acc_005"]),
            serde_json::json!(["churn-acc_018"])
        ]
    );
    for x in rejections {
        let reason = x["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("invalid_blocks") && reason.contains("image_url"),
            "Slack's reason: {reason}"
        );
    }
    assert_eq!(slack.messages(CHANNEL).len(), 5);
    assert_paced(&slack, &slack.messages(CHANNEL));

    // The layout fixed, the next run posts exactly the two rejected alerts.
    write_activate_yml(&p, &layout(""));
    alerts_run(&p, &slack).run().assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 2, 0, 0);
    let messages = slack.messages(CHANNEL);
    assert_eq!(
        texts(&messages),
        model_messages(&p),
        "every alert exactly once"
    );
    // A new process does not know when the last one posted: its first message may meet the
    // previous run's second and be answered 429, then waits for Retry-After.
    assert!(
        slack.rate_limited() <= 1,
        "{} posts answered 429",
        slack.rate_limited()
    );
}

#[test]
fn slack_429_retry_after_is_honoured_and_every_alert_lands_once() {
    let p = Project::new();
    let slack = workspace();
    // Configured faster than Slack allows: the fake answers 429 with Retry-After.
    write_activate_yml(&p, &bot_yml("    messages_per_second: 5\n"));
    alerts_run(&p, &slack).run().assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    assert!(slack.rate_limited() > 0, "the fake enforced its limit");
    let messages = slack.messages(CHANNEL);
    assert_eq!(texts(&messages), model_messages(&p));
    assert_eq!(posts(&slack), 7 + slack.rate_limited());
}

#[test]
fn slack_archived_channel_rejects_rows_until_unarchived() {
    let p = Project::new();
    let slack = workspace();
    slack.set_archived(CHANNEL, true);
    write_activate_yml(&p, &bot_yml("    batch_size: 20\n"));
    alerts_run(&p, &slack).run().assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 7);
    assert!(
        r["rejections"]
            .as_array()
            .expect("rejections")
            .iter()
            .all(|x| x["reason"] == "is_archived"),
        "{r:#}"
    );
    assert!(slack.messages(CHANNEL).is_empty());

    slack.set_archived(CHANNEL, false);
    alerts_run(&p, &slack).run().assert_success();
    assert_counts(&p.result(syncs::ALERTS), 7, 0, 0);
    assert_eq!(texts(&slack.messages(CHANNEL)), model_messages(&p));
}

#[test]
fn slack_bad_token_fails_the_sync_and_is_never_printed() {
    let p = Project::new();
    let slack = workspace();
    write_activate_yml(&p, &bot_yml(""));
    let wrong = "xoxb-9999-wrongTokenZ4k";
    let out = alerts_run(&p, &slack).env("SLACK_BOT_TOKEN", wrong).run();
    out.assert_code(1);
    assert!(out.text().contains("invalid_auth"), "{out}");
    assert_status(&p.result(syncs::ALERTS), "error");
    assert!(slack.messages(CHANNEL).is_empty());
    assert_eq!(posts(&slack), 1, "a refused token stops the sync at once");
    assert_secrets_never_written(&p, &[&out], &[wrong]);
}

#[test]
fn slack_configuration_errors_stop_before_sending() {
    let p = Project::new();
    let slack = workspace();
    for (yaml, needle) in [
        (bot_yml("    chanel: ops\n"), "unknown key `chanel`"),
        (
            bot_yml("    webhook_url: https://hooks.slack.com/services/T/B/x\n"),
            "not both",
        ),
        (
            bot_yml("    message_mode: weekly\n"),
            "`message_mode` must be",
        ),
    ] {
        write_activate_yml(&p, &yaml);
        let out = alerts_run(&p, &slack).run();
        out.assert_code(2);
        assert!(out.text().contains(needle), "{needle}\n{out}");
        assert!(out.text().contains("destinations.alerts"), "{out}");
    }
    assert_eq!(slack.requests().len(), 0);
}

/// Slack posts a message, then the connection drops before the answer: the client cannot tell
/// it from a post that never arrived and retries, and Slack has no idempotency key for
/// messages, so that alert is posted twice. The true guarantee is at least once: every alert
/// is in the channel, the lost-answer alert twice and no other twice, each row is counted
/// delivered once, and a rerun sends nothing.
#[test]
fn slack_commit_then_drop_posts_that_message_twice_at_least_once() {
    let p = Project::new();
    let slack = workspace();
    slack.drop_after_post_every(3);
    write_activate_yml(&p, &bot_yml(""));
    let out = alerts_run(&p, &slack).run();
    out.assert_success();
    let r = p.result(syncs::ALERTS);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    let dropped = slack.requests().iter().filter(|q| q.dropped).count();
    assert!(
        dropped >= 1,
        "some posts were dropped after Slack kept them"
    );
    let messages = slack.messages(CHANNEL);
    let mut per_text = std::collections::BTreeMap::<String, usize>::new();
    for m in &messages {
        *per_text.entry(m.text.clone()).or_default() += 1;
    }
    let model = model_messages(&p);
    assert_eq!(
        per_text.keys().cloned().collect::<Vec<_>>(),
        model,
        "every alert arrived"
    );
    assert_eq!(
        per_text.values().filter(|n| **n == 2).count(),
        dropped,
        "each dropped post is posted again, once: {per_text:?}"
    );
    assert!(per_text.values().all(|n| *n <= 2), "{per_text:?}");
    assert_eq!(messages.len(), model.len() + dropped);

    let before = posts(&slack);
    let out = alerts_run(&p, &slack).run();
    out.assert_success();
    assert_counts(&p.result(syncs::ALERTS), 0, 0, 0);
    assert_eq!(posts(&slack), before, "a rerun sends nothing");
}

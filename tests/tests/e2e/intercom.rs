//! The intercom destination end to end: the real binary against the stateful fake Intercom
//! API (`dbt_activate_e2e::fakes::intercom`). `churn_risk` goes to companies (as the example
//! has it: account_id -> company_id); `high_value_at_risk` is pointed at contacts.

use dbt_activate_e2e::fakes::intercom::{FakeIntercom, Faults};
use dbt_activate_e2e::{ActivateCommand, Project, Request, json_text, num, sorted, syncs};
use serde_json::json;

use crate::common::*;

const TOKEN: &str = "icm-token-Xq7Vb2";
const CONTACTS_SYNC: &str = "high_value_at_risk__marketing__contacts";

/// Points `cs_tool` (and `marketing`) at the fake on the ci target.
fn use_intercom(p: &Project, extra: &str) {
    let line = format!(
        "      cs_tool:   {{type: intercom, access_token: \"{{{{ env_var('INTERCOM_TOKEN') }}}}\", base_url: \"{{{{ env_var('INTERCOM_URL') }}}}\"{extra}}}\n      marketing: {{type: intercom, access_token: \"{{{{ env_var('INTERCOM_TOKEN') }}}}\", base_url: \"{{{{ env_var('INTERCOM_URL') }}}}\"{extra}}}\n"
    );
    p.edit_file("activate.yml", |s| {
        s.replace(
            "      marketing: {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: marketing}\n",
            &line,
        )
    });
}

fn cmd<'p>(p: &'p Project, fake: &FakeIntercom, select: &str) -> ActivateCommand<'p> {
    p.activate_cmd(&["run", "--target", "ci", "--select", select])
        .env("INTERCOM_TOKEN", TOKEN)
        .env("INTERCOM_URL", &fake.base_url())
}

/// A workspace with the custom company attributes the example maps.
fn workspace() -> FakeIntercom {
    let fake = FakeIntercom::start(TOKEN);
    fake.define_attribute("company", "churn_risk_score", "float");
    fake.define_attribute("company", "risk_band", "string");
    fake.define_attribute("contact", "account_id", "string");
    fake.define_attribute("contact", "account_name", "string");
    fake.define_attribute("contact", "mrr", "float");
    fake
}

fn companies_in_intercom(fake: &FakeIntercom) -> Rows {
    sorted(
        fake.companies()
            .iter()
            .map(|c| {
                vec![
                    json_text(&c["company_id"]),
                    json_text(&c["name"]),
                    json_text(&c["custom_attributes"]["churn_risk_score"]),
                    json_text(&c["custom_attributes"]["risk_band"]),
                    json_text(&c["monthly_spend"]),
                ]
            })
            .collect(),
    )
}

fn contacts_in_intercom(fake: &FakeIntercom) -> Rows {
    sorted(
        fake.contacts()
            .iter()
            .map(|c| {
                vec![
                    json_text(&c["custom_attributes"]["account_id"]),
                    json_text(&c["email"]),
                    json_text(&c["custom_attributes"]["account_name"]),
                    json_text(&c["custom_attributes"]["mrr"]),
                ]
            })
            .collect(),
    )
}

fn segment_rows(p: &Project) -> Rows {
    segment_in_model(p)
        .into_iter()
        .map(|mut r| {
            r[3] = r[3].as_deref().map(num);
            r
        })
        .collect()
}

/// Requests that change something (searches and reads excluded).
fn writes(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| r.method != "GET" && r.path != "/contacts/search")
        .collect()
}

#[test]
fn intercom_companies_upsert_equals_the_model_within_the_rate_limit_and_a_rerun_sends_nothing() {
    let p = Project::new();
    let fake = workspace();
    // 20 requests a second: the 30 companies need two windows, paced by X-RateLimit-*.
    fake.set_rate_limit(20, 1);
    use_intercom(&p, ", concurrency: 4");
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_counts(&r, 30, 0, 0);
    assert_eq!(companies_in_intercom(&fake), companies_in_model(&p));
    assert_eq!(fake.throttled(), 0, "no request went over the limit");
    assert!(fake.busiest_window() <= fake.limit());
    let requests = fake.requests();
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(r.header("intercom-version"), Some("2.11"));
    }
    assert_eq!(
        writes(&requests).len(),
        30,
        "one POST /companies per company"
    );
    assert!(
        writes(&requests)
            .iter()
            .all(|r| r.method == "POST" && r.path == "/companies")
    );

    // Nothing changed: only the preflight's schema read is sent.
    let before = requests.len();
    let again = cmd(&p, &fake, "churn_risk").run();
    again.assert_success();
    assert_counts(&p.result(syncs::CHURN_RISK), 0, 0, 0);
    let after = fake.requests();
    assert!(
        writes(&after[before..]).is_empty(),
        "a rerun writes nothing"
    );
    assert!(
        after[before..]
            .iter()
            .all(|r| r.path.starts_with("/data_attributes")),
        "{:?}",
        after[before..].iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_secrets_never_written(&p, &[&out, &again], &[TOKEN]);
}

#[test]
fn intercom_a_field_the_workspace_lacks_or_a_bad_token_stops_before_sending() {
    let p = Project::new();
    let fake = FakeIntercom::start(TOKEN);
    fake.define_attribute("company", "churn_risk_score", "float");
    use_intercom(&p, "");
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_code(2);
    let text = out.text();
    assert!(text.contains("risk_band"), "names the missing field\n{out}");
    assert!(text.contains("churn_risk"), "names the model\n{out}");
    assert!(writes(&fake.requests()).is_empty(), "nothing was sent");
    let validate = p
        .activate_cmd(&["validate", "--target", "ci"])
        .env("INTERCOM_TOKEN", TOKEN)
        .env("INTERCOM_URL", &fake.base_url())
        .run();
    assert_ne!(validate.code, 0, "{validate}");
    assert!(validate.text().contains("risk_band"), "{validate}");

    let wrong = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_risk"])
        .env("INTERCOM_TOKEN", "not-the-token-123")
        .env("INTERCOM_URL", &fake.base_url())
        .run();
    wrong.assert_code(2);
    assert!(wrong.text().contains("not authorised"), "{wrong}");
    assert!(wrong.text().contains("Access Token Invalid"), "{wrong}");
    assert!(!wrong.text().contains("not-the-token-123"), "{wrong}");
    assert!(writes(&fake.requests()).is_empty());
    assert!(fake.companies().is_empty());
}

#[test]
fn intercom_a_refused_company_is_a_per_row_reject_and_is_retried_next_run() {
    let p = Project::new();
    let fake = workspace();
    fake.refuse(
        "company",
        "company_id",
        json!("acc_007"),
        "parameter_invalid",
        "The company acc_007 is locked by an admin",
    );
    use_intercom(&p, "");
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1);
    assert_counts(&r, 29, 0, 0);
    let rejections = r["rejections"].as_array().expect("rejections");
    assert_eq!(rejection_key(&rejections[0]), json!(["acc_007"]));
    let reason = rejections[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("HTTP 400 parameter_invalid: The company acc_007 is locked by an admin"),
        "{reason}"
    );
    assert_eq!(fake.companies().len(), 29);

    fake.clear_refusals();
    let before = fake.requests().len();
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "success");
    assert_counts(&r, 1, 0, 0);
    let sent = fake.requests();
    let sent = writes(&sent[before..]);
    assert_eq!(sent.len(), 1, "only the rejected row is sent again");
    assert_eq!(sent[0].json()["company_id"], json!("acc_007"));
    assert_eq!(companies_in_intercom(&fake), companies_in_model(&p));
}

/// Turns `high_value_at_risk` (mirrored, on_delete: delete) into a contacts sync.
fn segment_to_contacts(p: &Project) {
    p.replace_in_file(
        "models/marts/schema.yml",
        "object: high_value_at_risk\n",
        "object: contacts\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
}

#[test]
fn intercom_contacts_mirror_survives_faults_once_each_and_deletes_what_left() {
    let p = Project::new();
    let fake = workspace();
    segment_to_contacts(&p);
    use_intercom(&p, ", max_retries: 8");
    // One account's owner already is a contact (made in Intercom's UI): it is found and
    // updated, not duplicated.
    let first = segment_rows(&p).remove(0);
    fake.seed_contact(json!({
        "role": "user",
        "email": first[1],
        "custom_attributes": {"account_id": first[0], "account_name": "old name"}
    }));
    // Every 3rd write is carried out but answered 500 (the answer lost), every 5th request
    // is throttled: retried creates meet Intercom's 409 conflict and become updates.
    fake.set_faults(Faults {
        fail_after_commit_every: Some(3),
        throttle_every: Some(5),
    });
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    out.assert_success();
    let r = p.result(CONTACTS_SYNC);
    assert_status(&r, "success");
    assert_counts(&r, 7, 0, 0);
    assert_eq!(contacts_in_intercom(&fake), segment_rows(&p));
    assert_eq!(fake.contacts().len(), 7, "every contact exactly once");
    assert!(fake.contacts().iter().all(|c| c["role"] == json!("user")));
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r.status == 500));
    assert!(
        requests.iter().any(|r| r.status == 409),
        "a retried create met a conflict"
    );
    for r in requests.iter().filter(|r| r.path == "/contacts/search") {
        let q = r.json();
        assert_eq!(q["query"]["field"], json!("custom_attributes.account_id"));
        assert_eq!(q["query"]["operator"], json!("="));
    }

    // Massive Dynamic (acc_020) leaves the segment; Tyrell's (acc_012) mrr changes.
    fake.set_faults(Faults::default());
    p.edit_seed("accounts", |s| {
        let s: String = s
            .lines()
            .filter(|l| !l.starts_with("acc_020,"))
            .map(|l| format!("{l}\n"))
            .collect();
        s.replace(",5342.50,", ",5400.00,")
    });
    p.dbt_build();
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    out.assert_success();
    let r = p.result(CONTACTS_SYNC);
    assert_status(&r, "success");
    assert_counts(&r, 0, 1, 1);
    assert_eq!(contacts_in_intercom(&fake), segment_rows(&p));
    assert_eq!(fake.contacts().len(), 6);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.starts_with("/contacts/"))
    );
    assert_secrets_never_written(&p, &[&out], &[TOKEN]);
}

/// Intercom carries out a write, then the connection drops before the answer: the client sees a
/// connection error and retries; a retried create meets the 409 conflict and becomes an update,
/// so every contact exists exactly once.
#[test]
fn intercom_commit_then_drop_lands_every_contact_exactly_once() {
    let p = Project::new();
    let fake = workspace();
    segment_to_contacts(&p);
    use_intercom(&p, ", max_retries: 8");
    fake.drop_after_commit_every(3);
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    out.assert_success();
    let r = p.result(CONTACTS_SYNC);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    let requests = fake.requests();
    assert!(
        requests.iter().any(|q| q.dropped),
        "some connections were dropped"
    );
    assert!(
        requests.iter().any(|q| q.status == 409),
        "a retried create met a conflict"
    );
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for c in fake.contacts() {
        *per_key
            .entry(json_text(&c["custom_attributes"]["account_id"]).unwrap_or_default())
            .or_default() += 1;
    }
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    let model = segment_rows(&p);
    assert_eq!(contacts_in_intercom(&fake), model);
    // Nothing reported delivered that the workspace does not hold.
    assert_counts(&r, model.len() as u64, 0, 0);
    assert_eq!(fake.contacts().len(), model.len());

    let before = writes(&fake.requests()).len();
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    out.assert_success();
    assert_eq!(
        writes(&fake.requests()).len(),
        before,
        "a rerun sends nothing"
    );
    assert_eq!(contacts_in_intercom(&fake), model);
}

#[test]
fn intercom_update_only_and_insert_only_companies() {
    let p = Project::new();
    let fake = workspace();
    use_intercom(&p, "");
    // Three companies already exist in Intercom, one of them with stale values.
    let seeded = ["acc_001", "acc_002", "acc_003"];
    p.replace_in_file(
        "models/marts/schema.yml",
        "          match_on: company_id\n",
        "          match_on: company_id\n          operation: update\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    for id in seeded {
        fake.seed_company(json!({"company_id": id, "name": "stale", "custom_attributes": {}}));
    }
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "warn");
    assert_eq!(
        count(&r, "rejected"),
        27,
        "only existing companies are updated"
    );
    let rejections = r["rejections"].as_array().expect("rejections");
    assert!(rejections.iter().all(|x| {
        x["reason"]
            .as_str()
            .is_some_and(|s| s.contains("no company with company_id"))
    }));
    let model = companies_in_model(&p);
    let existing: Rows = model
        .iter()
        .filter(|r| seeded.contains(&r[0].as_deref().unwrap_or_default()))
        .cloned()
        .collect();
    assert_eq!(companies_in_intercom(&fake), existing);
    assert!(writes(&fake.requests()).iter().all(|r| r.method == "PUT"));

    // Insert-only: a company created meanwhile in Intercom is refused, the others created.
    p.replace_in_file(
        "models/marts/schema.yml",
        "          operation: update\n",
        "          operation: insert\n",
    );
    p.dbt(&["parse", "--target", "ci"]).assert_success();
    fake.seed_company(
        json!({"company_id": "acc_004", "name": "kept as is", "custom_attributes": {}}),
    );
    // The 27 rows update-only refused were not delivered, so they are sent again.
    let out = cmd(&p, &fake, "churn_risk").run();
    out.assert_success();
    let r = p.result(syncs::CHURN_RISK);
    assert_status(&r, "warn");
    assert_counts(&r, 26, 0, 0);
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    assert_eq!(rejection_key(&r["rejections"][0]), json!(["acc_004"]));
    let rejections = r["rejections"].as_array().expect("rejections");
    assert!(rejections.iter().all(|x| {
        x["reason"]
            .as_str()
            .is_some_and(|s| s.contains("already exists"))
    }));
    let held = companies_in_intercom(&fake);
    assert_eq!(held.len(), 30);
    let kept: Vec<_> = fake
        .companies()
        .into_iter()
        .filter(|c| c["company_id"] == json!("acc_004"))
        .collect();
    assert_eq!(
        kept[0]["name"],
        json!("kept as is"),
        "insert never overwrites"
    );
    let expected: Rows = model
        .into_iter()
        .filter(|r| r[0].as_deref() != Some("acc_004"))
        .collect();
    let held_but_acc_004: Rows = held
        .into_iter()
        .filter(|r| r[0].as_deref() != Some("acc_004"))
        .collect();
    assert_eq!(held_but_acc_004, expected);
}

// ---- tags for segments (`object: "tag:<name>"`) ----

const TAG_NAME: &str = "High value at risk";
const TAG_SYNC: &str = "segment_to_intercom_tag";

/// `high_value_at_risk` as the contacts holding an Intercom tag, matched on email.
fn segment_to_tag(p: &Project, mapping: &str) {
    p.edit_file("models/marts/schema.yml", |s| {
        s.replace(
            "          destination: marketing\n          object: high_value_at_risk\n          sync_mode: mirror\n          on_delete: delete\n          primary_key: account_id\n          mapping:\n            account_id: account_id\n            owner_email: email\n            account_name: account_name\n            mrr: mrr\n",
            &format!(
                "          name: {TAG_SYNC}\n          destination: marketing\n          object: \"tag:{TAG_NAME}\"\n          sync_mode: mirror\n          on_delete: delete\n          primary_key: owner_email\n          match_on: email\n          mapping:\n{mapping}"
            ),
        )
    });
    p.dbt(&["parse", "--target", "ci"]).assert_success();
}

fn segment_emails(p: &Project) -> Vec<String> {
    sorted(
        segment_in_model(p)
            .into_iter()
            .filter_map(|r| r[1].clone())
            .collect(),
    )
}

/// Requests that tag or untag a contact.
fn tag_writes(requests: &[Request]) -> Vec<&Request> {
    requests
        .iter()
        .filter(|r| {
            r.status < 300
                && r.path.starts_with("/contacts/")
                && r.path.contains("/tags")
                && r.method != "GET"
        })
        .collect()
}

#[test]
fn intercom_tag_follows_the_segment() {
    let p = Project::new();
    let fake = workspace();
    segment_to_tag(&p, "            owner_email: email\n");
    use_intercom(&p, "");
    let emails = segment_emails(&p);
    assert!(emails.len() > 2, "{emails:?}");
    // Every owner is a contact but one; another contact holds the tag already (tagged in
    // Intercom's UI) and is in no segment: the sync leaves it alone.
    let unknown = emails[0].clone();
    for email in &emails[1..] {
        fake.seed_contact(json!({"role": "user", "email": email}));
    }
    let bystander = fake.seed_contact(json!({"role": "user", "email": "bystander@example.com"}));
    fake.tag_contact(&bystander, TAG_NAME);
    // Every 4th request is throttled (429, Retry-After: 0) and retried.
    fake.set_faults(Faults {
        throttle_every: Some(4),
        ..Faults::default()
    });

    let first = cmd(&p, &fake, "high_value_at_risk").run();
    first.assert_success();
    let r = p.result(TAG_SYNC);
    assert_status(&r, "warn");
    assert_eq!(count(&r, "rejected"), 1, "{r:#}");
    let reason = r["rejections"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no Intercom contact") && reason.contains(&unknown),
        "the reason names the contact: {r:#}"
    );
    assert_eq!(
        fake.tags(),
        vec![TAG_NAME.to_owned()],
        "one tag, found by name"
    );
    let mut expected: Vec<String> = emails[1..].to_vec();
    expected.push("bystander@example.com".into());
    let expected = sorted(expected);
    assert_eq!(fake.tagged(TAG_NAME, "email"), Some(expected));
    assert!(fake.throttled() > 0, "429s were met and waited out");
    let requests = fake.requests();
    for r in requests.iter().filter(|r| r.path == "/contacts/search") {
        assert_eq!(r.json()["query"]["field"], json!("email"));
    }
    assert_eq!(
        tag_writes(&requests).len(),
        emails.len() - 1,
        "one tag call per known contact"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.path != "/contacts" || r.method != "POST"),
        "a tag sync never creates contacts"
    );

    // The missing contact appears: the next run tags only that one.
    fake.set_faults(Faults::default());
    fake.seed_contact(json!({"role": "user", "email": unknown}));
    let second = cmd(&p, &fake, "high_value_at_risk").run();
    second.assert_success();
    let r = p.result(TAG_SYNC);
    assert_status(&r, "success");
    assert_eq!(count(&r, "rejected"), 0, "{r:#}");
    assert_eq!(tag_writes(&fake.requests()).len(), emails.len());
    let mut all = emails.clone();
    all.push("bystander@example.com".into());
    assert_eq!(fake.tagged(TAG_NAME, "email"), Some(sorted(all)));

    // Nothing changed: a rerun sends nothing.
    let before = fake.requests().len();
    let third = cmd(&p, &fake, "high_value_at_risk").run();
    third.assert_success();
    assert_counts(&p.result(TAG_SYNC), 0, 0, 0);
    let rerun = &fake.requests()[before..];
    assert!(
        rerun.iter().all(|r| r.method == "GET"),
        "a rerun sends nothing: {:?}",
        rerun
            .iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    );

    // Accounts leave the segment: their owners are untagged, the contacts stay.
    p.dbt(&[
        "build",
        "--target",
        "ci",
        "--select",
        "high_value_at_risk",
        "--vars",
        "{high_value_mrr_threshold: 2700}",
    ])
    .assert_success();
    let after = segment_emails(&p);
    assert!(after.len() < emails.len() && !after.is_empty());
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    out.assert_success();
    let r = p.result(TAG_SYNC);
    assert_status(&r, "success");
    assert_counts(&r, 0, 0, (emails.len() - after.len()) as u64);
    let mut still = after.clone();
    still.push("bystander@example.com".into());
    assert_eq!(fake.tagged(TAG_NAME, "email"), Some(sorted(still)));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains("/tags/"))
    );
    assert_eq!(
        fake.contacts().len(),
        emails.len() + 1,
        "untagging never deletes a contact"
    );
    assert_secrets_never_written(&p, &[&first, &second, &third, &out], &[TOKEN]);
}

#[test]
fn intercom_tag_sync_with_mapped_values_stops_before_sending() {
    let p = Project::new();
    let fake = workspace();
    segment_to_tag(&p, "            owner_email: email\n            mrr: mrr\n");
    use_intercom(&p, "");
    let out = cmd(&p, &fake, "high_value_at_risk").run();
    assert_config_error(&p, &out, &["map only the match field `email`", "`mrr`"]);
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "only reads before the refusal"
    );
    assert!(fake.tags().is_empty());
}

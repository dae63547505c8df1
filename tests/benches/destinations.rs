//! Throughput benchmark (not a test) of the SaaS destinations against their local fakes,
//! configured with the vendors' published limits. Timings are never pass/fail: it prints
//! a table, and `docs/destinations/benchmarks.md` records the figures.
//!
//!   bash scripts/bench-destinations.sh            # PostgreSQL for the harness + this bench
//!   cargo bench -p dbt-activate-e2e --bench destinations   # with ACTIVATE_TEST_PG_URL set
//!
//! Each destination gets a query sync over `range(N)` (no dbt rebuild), the real
//! `dbt-activate` binary (debug build, `cargo build -p dbt-activate`) runs it once, and the
//! figures come from the fake's request log:
//! - rate: requests counted by the limit between the first and the last write,
//!   `(n - 1) / (t_last - t_first)`, as a share of the allowed sustained rate;
//! - batch fill: mean records per write request, leaving out the last (remainder) batch,
//!   against the API's maximum;
//! - 429s: answers with status 429 among all requests; failed rows: the sync's `rejected`;
//! - busiest window: the most counted requests in any window of the vendor's length (1 s, or
//!   10 s for HubSpot), sliding, against the number allowed in it (no burst above the limit).
//!
//! `BENCH_RUNS` (default 3) runs each destination that many times and reports the run with
//! the median share of the allowed rate (the shares of every run are printed too).
//! `ACTIVATE_TEST_BINARY` picks the binary (scripts/bench-destinations.sh: the release build).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dbt_activate_e2e::Project;
use dbt_activate_e2e::fakes::hubspot::HubSpotFake;
use dbt_activate_e2e::fakes::salesforce::{CLIENT_ID, CLIENT_SECRET, SalesforceFake};
use dbt_activate_e2e::fakes::slack::FakeSlack;
use dbt_activate_e2e::fakes::stripe::FakeStripe;

const HUBSPOT_TOKEN: &str = "pat-na1-5d1c0ffe-9a7b-4e2d-b3c1-7f00d5ea7e11";
const STRIPE_KEY: &str = "sk_test_benchStripeSecret51Hx9QzT";
const SLACK_TOKEN: &str = "xoxb-1111-2222-benchSlackTokenQ7w";
const SYNC: &str = "bench";

/// One request, as the bench reads it from a fake.
struct Req {
    at: Instant,
    status: u16,
    /// A write carrying rows (a batch upsert, a Collections call, a create, a post).
    write: bool,
    /// Rows in a write.
    records: usize,
    /// Whether it counts against the limit being measured.
    counted: bool,
}

/// What one destination's run achieved.
struct Figures {
    name: &'static str,
    rows: usize,
    limit: String,
    allowed_per_s: f64,
    batch_max: Option<usize>,
    requests: usize,
    writes: usize,
    achieved_per_s: f64,
    fill: Option<f64>,
    short_full: usize,
    throttled: usize,
    rejected: u64,
    status: String,
    wall: Duration,
    /// The most counted requests in any sliding window of `window`, and how many it allows.
    busiest: usize,
    window: Duration,
    per_window: usize,
}

/// The most of `times` (sorted) within any window of length `window` (half-open).
fn busiest_window(times: &[Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while t.duration_since(times[start]) >= window {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

impl Figures {
    fn compute(
        name: &'static str,
        rows: usize,
        limit: &str,
        allowed_per_s: f64,
        batch_max: Option<usize>,
        reqs: &[Req],
        run: &Run,
    ) -> Self {
        // HubSpot counts 190 per rolling 10 s; the others a number per second.
        let (window, per_window) = if name.starts_with("HubSpot") {
            (Duration::from_secs(10), 190)
        } else {
            (Duration::from_secs(1), allowed_per_s.round() as usize)
        };
        let mut counted: Vec<Instant> = reqs
            .iter()
            .filter(|r| r.counted && r.status != 429)
            .map(|r| r.at)
            .collect();
        counted.sort();
        let busiest = busiest_window(&counted, window);
        let writes: Vec<&Req> = reqs.iter().filter(|r| r.write).collect();
        let (first, last) = match (writes.first(), writes.last()) {
            (Some(f), Some(l)) => (f.at, l.at),
            _ => (run.started, run.started),
        };
        let in_span = reqs
            .iter()
            .filter(|r| r.counted && r.at >= first && r.at <= last)
            .count();
        let span = last.duration_since(first).as_secs_f64();
        let achieved_per_s = if span > 0.0 {
            (in_span.saturating_sub(1)) as f64 / span
        } else {
            0.0
        };
        // How the pace evolves: the mean gap between writes in the first and last tenth.
        if writes.len() >= 20 {
            let tenth = writes.len() / 10;
            let gap = |w: &[&Req]| {
                w.last()
                    .expect("writes")
                    .at
                    .duration_since(w[0].at)
                    .as_secs_f64()
                    * 1000.0
                    / (w.len() - 1) as f64
            };
            eprintln!(
                "{name}: mean gap between writes {:.1} ms in the first tenth, {:.1} ms in the last",
                gap(&writes[..tenth]),
                gap(&writes[writes.len() - tenth..])
            );
        }
        let (fill, short_full) = match batch_max {
            Some(max) if writes.len() > 1 => {
                let full = &writes[..writes.len() - 1];
                let mean = full.iter().map(|r| r.records).sum::<usize>() as f64 / full.len() as f64;
                let short = full.iter().filter(|r| r.records < max).count();
                (Some(mean / max as f64), short)
            }
            _ => (None, 0),
        };
        Self {
            name,
            rows,
            limit: limit.to_owned(),
            allowed_per_s,
            batch_max,
            requests: reqs.len(),
            writes: writes.len(),
            achieved_per_s,
            fill,
            short_full,
            throttled: reqs.iter().filter(|r| r.status == 429).count(),
            rejected: run.rejected,
            status: run.status.clone(),
            wall: run.wall,
            busiest,
            window,
            per_window,
        }
    }
}

/// The outcome of one `dbt-activate run`.
struct Run {
    started: Instant,
    wall: Duration,
    status: String,
    rejected: u64,
}

/// Records when each request of a fake arrived, by polling its request count, while `f` runs.
fn timed<T>(count: &(dyn Fn() -> usize + Sync), f: impl FnOnce() -> T) -> (T, Vec<Instant>) {
    let stop = AtomicBool::new(false);
    let times = Mutex::new(Vec::new());
    let out = std::thread::scope(|scope| {
        scope.spawn(|| {
            loop {
                let done = stop.load(Ordering::Acquire);
                let n = count();
                let now = Instant::now();
                let mut t = times.lock().expect("times");
                while t.len() < n {
                    t.push(now);
                }
                drop(t);
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        let out = f();
        stop.store(true, Ordering::Release);
        out
    });
    (out, times.into_inner().expect("times"))
}

/// activate.yml: the example's destinations as files (its model syncs must resolve) plus
/// `bench` = `destination`, and one query sync `bench` over `range(rows)`.
fn write_activate_yml(p: &Project, destination: &str, select: &str, sync: &str) {
    p.write_file(
        "activate.yml",
        &format!(
            r#"destinations:
  crm:       {{type: file, path: "synced/crm", format: jsonl}}
  cs_tool:   {{type: file, path: "synced/cs_tool", format: jsonl}}
  marketing: {{type: file, path: "synced/marketing", format: csv}}
  billing:   {{type: file, path: "synced/billing", format: jsonl}}
  alerts:    {{type: file, path: "synced/alerts", format: jsonl}}
  sales:     {{type: file, path: "synced/sales", format: jsonl}}
  bench:
{destination}
syncs:
  {SYNC}:
    query: |
      {select}
      where exists (select 1 from {{{{ ref('stg_leads') }}}})
    destination: bench
{sync}"#
        ),
    );
}

/// Longest a benchmark run may take before it is killed (the harness's own limit is shorter).
const DEADLINE: Duration = Duration::from_secs(600);

fn run(p: &Project, env: &[(&str, &str)]) -> Run {
    let mut cmd = p.activate_cmd(&["run", "--target", "ci", "--select", SYNC]);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for dbt-activate") {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = started.elapsed();
    let (status, rejected) = match std::fs::read_to_string(p.file("target/activate_results.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|j| {
            j["results"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["name"] == SYNC).cloned())
        }) {
        Some(r) => (
            r["status"].as_str().unwrap_or("?").to_owned(),
            r["rejected"].as_u64().unwrap_or(0),
        ),
        None => ("no result".to_owned(), 0),
    };
    if code != 0 || status != "success" {
        eprintln!(
            "dbt-activate exited {code} (sync status {status}); rerun with ACTIVATE_TEST_KEEP=1 to keep the project"
        );
    }
    Run {
        started,
        wall,
        status,
        rejected,
    }
}

/// The fake's own service time for one request (`Connection: close`), sent from here: how
/// much of the pace the fake itself costs at the end of a run.
fn probe(base_url: &str, path: &str, auth: &str, body: &str) -> Duration {
    use std::io::{Read, Write};
    let addr = base_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let started = Instant::now();
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return Duration::ZERO;
    };
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    started.elapsed()
}

fn hubspot(rows: usize) -> Figures {
    let p = Project::new();
    let fake = HubSpotFake::start(HUBSPOT_TOKEN);
    fake.set_rate_limit(190, Duration::from_secs(10));
    fake.define_property("companies", "company_id", "string", true, &[]);
    fake.define_property("companies", "bench_value", "number", false, &[]);
    write_activate_yml(
        &p,
        "    type: hubspot\n    access_token: \"{{ env_var('HUBSPOT_ACCESS_TOKEN') }}\"\n    base_url: \"{{ env_var('HUBSPOT_BASE_URL') }}\"\n    requests_per_10_seconds: 190\n",
        &format!("select 'c' || i as company_id, i as bench_value from range({rows}) t(i)"),
        "    object: companies\n    sync_mode: incremental\n    primary_key: company_id\n    match_on: company_id\n    mapping:\n      company_id: company_id\n      bench_value: bench_value\n",
    );
    let r = run(
        &p,
        &[
            ("HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN),
            ("HUBSPOT_BASE_URL", &fake.base_url()),
        ],
    );
    let reqs: Vec<Req> = fake
        .seen()
        .into_iter()
        .map(|s| Req {
            at: s.at,
            status: s.status,
            write: s.method == "POST" && s.path.ends_with("/batch/upsert") && s.status != 429,
            records: s.inputs,
            counted: true,
        })
        .collect();
    let inputs: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"idProperty": "company_id", "id": format!("probe{i}"),
                "properties": {"company_id": format!("probe{i}"), "bench_value": i}})
        })
        .collect();
    // After the fake's window has room again.
    std::thread::sleep(Duration::from_secs(10));
    let t = probe(
        &fake.base_url(),
        "/crm/v3/objects/companies/batch/upsert",
        &format!("Bearer {HUBSPOT_TOKEN}"),
        &serde_json::json!({ "inputs": inputs }).to_string(),
    );
    eprintln!(
        "HubSpot fake: one batch upsert of 100 new inputs with {} records held takes {:.1} ms",
        fake.records("companies").len(),
        t.as_secs_f64() * 1000.0
    );
    Figures::compute(
        "HubSpot (batch upsert)",
        rows,
        "190 req / 10 s rolling",
        19.0,
        Some(100),
        &reqs,
        &r,
    )
}

fn salesforce(rows: usize) -> Figures {
    let p = Project::new();
    let fake = SalesforceFake::start();
    fake.set_rate_limit(25);
    write_activate_yml(
        &p,
        &format!(
            "    type: salesforce\n    login_url: \"{{{{ env_var('SF_LOGIN_URL') }}}}\"\n    client_id: \"{{{{ env_var('SF_CLIENT_ID') }}}}\"\n    client_secret: \"{{{{ env_var('SF_CLIENT_SECRET') }}}}\"\n    requests_per_second: 25\n    bulk_threshold: {}\n",
            rows.max(2_000)
        ),
        &format!(
            "select 'lead' || i || '@bench.example' as email, 'Company ' || i as company from range({rows}) t(i)"
        ),
        "    object: Lead\n    sync_mode: incremental\n    primary_key: email\n    mapping:\n      email: Email\n      company: Company\n",
    );
    let (r, times) = timed(&|| fake.requests().len(), || {
        run(
            &p,
            &[
                ("SF_LOGIN_URL", &fake.url()),
                ("SF_CLIENT_ID", CLIENT_ID),
                ("SF_CLIENT_SECRET", CLIENT_SECRET),
            ],
        )
    });
    let reqs: Vec<Req> = fake
        .requests()
        .into_iter()
        .zip(times)
        .map(|(q, at)| {
            let write = q.path.contains("/composite/sobjects") && q.status != 429;
            let records = if write {
                serde_json::from_slice::<serde_json::Value>(&q.body)
                    .ok()
                    .and_then(|v| v["records"].as_array().map(Vec::len))
                    .unwrap_or(0)
            } else {
                0
            };
            Req {
                at,
                status: q.status,
                write,
                records,
                counted: true,
            }
        })
        .collect();
    Figures::compute(
        "Salesforce (sObject Collections)",
        rows,
        "200 records / call; fake: 25 calls / s",
        25.0,
        Some(200),
        &reqs,
        &r,
    )
}

fn stripe(rows: usize) -> Figures {
    let p = Project::new();
    let fake = FakeStripe::start(STRIPE_KEY, 25);
    write_activate_yml(
        &p,
        &format!(
            "    type: stripe\n    api_key: \"{{{{ env_var('STRIPE_API_KEY') }}}}\"\n    base_url: \"{}\"\n",
            fake.base_url()
        ),
        &format!(
            "select 'acc_' || i as account_id, 'Account ' || i as account_name, 'owner' || i || '@bench.example' as owner_email from range({rows}) t(i)"
        ),
        "    object: customers\n    sync_mode: incremental\n    operation: insert\n    primary_key: account_id\n    match_on: \"metadata[account_id]\"\n    mapping:\n      account_id: \"metadata[account_id]\"\n      account_name: name\n      owner_email: email\n",
    );
    let (r, times) = timed(&|| fake.requests().len(), || {
        run(&p, &[("STRIPE_API_KEY", STRIPE_KEY)])
    });
    let reqs: Vec<Req> = fake
        .requests()
        .into_iter()
        .zip(times)
        .map(|(q, at)| {
            let write = q.method == "POST" && q.path == "/v1/customers" && q.status != 429;
            Req {
                at,
                status: q.status,
                write,
                records: usize::from(write),
                counted: q.method == "POST",
            }
        })
        .collect();
    Figures::compute(
        "Stripe (create customers, insert)",
        rows,
        "25 writes / s",
        25.0,
        None,
        &reqs,
        &r,
    )
}

fn stripe_meter_events(rows: usize) -> Figures {
    let p = Project::new();
    let fake = FakeStripe::start(STRIPE_KEY, 25);
    write_activate_yml(
        &p,
        &format!(
            "    type: stripe\n    api_key: \"{{{{ env_var('STRIPE_API_KEY') }}}}\"\n    base_url: \"{}\"\n",
            fake.base_url()
        ),
        &format!(
            "select 'usage_' || i as usage_id, 'cus_bench' || (i % 50) as customer_id, i % 7 + 1 as quantity from range({rows}) t(i)"
        ),
        "    object: billing/meter_events\n    sync_mode: incremental\n    operation: insert\n    primary_key: usage_id\n    mapping:\n      \"'bench_calls'\": event_name\n      usage_id: identifier\n      customer_id: \"payload[stripe_customer_id]\"\n      quantity: \"payload[value]\"\n",
    );
    let (r, times) = timed(&|| fake.requests().len(), || {
        run(&p, &[("STRIPE_API_KEY", STRIPE_KEY)])
    });
    let reqs: Vec<Req> = fake
        .requests()
        .into_iter()
        .zip(times)
        .map(|(q, at)| {
            let write =
                q.method == "POST" && q.path == "/v1/billing/meter_events" && q.status != 429;
            Req {
                at,
                status: q.status,
                write,
                records: usize::from(write),
                counted: q.method == "POST",
            }
        })
        .collect();
    Figures::compute(
        "Stripe (billing meter events)",
        rows,
        "25 writes / s",
        25.0,
        None,
        &reqs,
        &r,
    )
}

fn slack(rows: usize) -> Figures {
    let p = Project::new();
    let fake = FakeSlack::start(SLACK_TOKEN);
    fake.add_channel("bench-alerts");
    write_activate_yml(
        &p,
        "    type: slack\n    token: \"{{ env_var('SLACK_BOT_TOKEN') }}\"\n    base_url: \"{{ env_var('SLACK_API_URL') }}\"\n",
        &format!(
            "select 'alert_' || i as alert_id, 'Bench alert ' || i as message from range({rows}) t(i)"
        ),
        "    object: bench-alerts\n    sync_mode: incremental\n    operation: insert\n    primary_key: alert_id\n    mapping:\n      alert_id: alert_id\n      message: text\n",
    );
    let (r, times) = timed(&|| fake.requests().len(), || {
        run(
            &p,
            &[
                ("SLACK_BOT_TOKEN", SLACK_TOKEN),
                ("SLACK_API_URL", &fake.api_url()),
            ],
        )
    });
    let reqs: Vec<Req> = fake
        .requests()
        .into_iter()
        .zip(times)
        .map(|(q, at)| {
            let write = q.path.ends_with("chat.postMessage") && q.status != 429;
            Req {
                at,
                status: q.status,
                write,
                records: usize::from(write),
                counted: q.path.ends_with("chat.postMessage"),
            }
        })
        .collect();
    let mut f = Figures::compute(
        "Slack (chat.postMessage, 1 channel)",
        rows,
        "1 message / s / channel",
        1.0,
        None,
        &reqs,
        &r,
    );
    // Slack answers its throttling with `ok: false, error: ratelimited` too.
    f.throttled = f.throttled.max(fake.rate_limited());
    f
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn main() {
    // `cargo bench` passes `--bench`; a name argument selects destinations.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let scale = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runs = scale("BENCH_RUNS", 3).max(1);
    // The run with the median share of the allowed rate, of `runs` runs.
    let median = |bench: &dyn Fn() -> Figures| {
        let mut results: Vec<Figures> = (0..runs).map(|_| bench()).collect();
        results.sort_by(|a, b| a.achieved_per_s.total_cmp(&b.achieved_per_s));
        let shares: Vec<String> = results
            .iter()
            .map(|f| pct(f.achieved_per_s / f.allowed_per_s))
            .collect();
        let mid = results.swap_remove(runs / 2);
        eprintln!(
            "{}: shares of the allowed rate over {runs} runs: {}; median {}",
            mid.name,
            shares.join(", "),
            pct(mid.achieved_per_s / mid.allowed_per_s)
        );
        mid
    };
    let mut all = Vec::new();
    if want("hubspot") {
        all.push(median(&|| hubspot(scale("BENCH_HUBSPOT_ROWS", 3_000))));
    }
    if want("salesforce") {
        all.push(median(&|| {
            salesforce(scale("BENCH_SALESFORCE_ROWS", 10_000))
        }));
    }
    if want("stripe") {
        all.push(median(&|| stripe(scale("BENCH_STRIPE_ROWS", 500))));
    }
    if want("stripe") {
        all.push(median(&|| {
            stripe_meter_events(scale("BENCH_STRIPE_ROWS", 500))
        }));
    }
    if want("slack") {
        all.push(median(&|| slack(scale("BENCH_SLACK_ROWS", 20))));
    }
    println!();
    println!(
        "| Destination | Rows | Published limit | Requests (writes) | Achieved rate | Share of allowed | Busiest window | Batch fill (full batches) | 429s | Failed rows | Sync status | Wall time |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for f in &all {
        let fill = match (f.fill, f.batch_max) {
            (Some(fill), Some(max)) => format!("{} of {max} ({} short)", pct(fill), f.short_full),
            _ => "n/a (1 row per request)".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} ({}) | {:.2}/s | {} | {} of {} in {} s | {} | {} ({}) | {} | {} | {:.1} s |",
            f.name,
            f.rows,
            f.limit,
            f.requests,
            f.writes,
            f.achieved_per_s,
            pct(f.achieved_per_s / f.allowed_per_s),
            f.busiest,
            f.per_window,
            f.window.as_secs(),
            fill,
            f.throttled,
            pct(f.throttled as f64 / f.requests.max(1) as f64),
            f.rejected,
            f.status,
            f.wall.as_secs_f64(),
        );
    }
}

//! A fake Slack workspace, from Slack's published contract:
//!
//! - `POST /api/chat.postMessage` (Web API): `Authorization: Bearer <bot token>`, a JSON body
//!   `{channel, text, blocks}`; answers HTTP 200 with `{"ok": true, "channel", "ts", "message"}`
//!   or `{"ok": false, "error": ...}` (`not_authed`, `invalid_auth`, `channel_not_found`,
//!   `not_in_channel`, `is_archived`, `no_text`, `msg_too_long`, `invalid_blocks` with an
//!   `errors` list, `invalid_json`).
//! - `POST /api/auth.test`: the token check.
//! - `POST /services/T.../B.../<secret>` (incoming webhooks): a JSON body `{text, blocks}`;
//!   answers `200 ok`, or plain-text errors: `400 invalid_payload|no_text|invalid_blocks`,
//!   `403 invalid_token`, `404 no_service`, `410 channel_is_archived`.
//! - Posting is limited to one message per second per channel: a faster post is answered
//!   `429 Too Many Requests` with `Retry-After` (seconds) and nothing is posted.
//! - Block Kit is validated: at most 50 blocks, known block types, section text at most 3,000
//!   characters, header text plain_text of at most 150, image blocks need `image_url` and
//!   `alt_text`; message `text` at most 40,000 characters.
//!
//! Every message posted is kept per channel, so tests assert what the channel finally holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Reply, Request, Webhook};

/// Messages a channel accepts per second.
const MIN_INTERVAL: Duration = Duration::from_millis(1000);
/// Network jitter between the client's clock and ours.
const TOLERANCE: Duration = Duration::from_millis(40);

/// A message as the channel holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub ts: String,
    pub text: String,
    pub blocks: Option<Value>,
    /// `bot` (chat.postMessage) or `webhook`.
    pub via: &'static str,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Channel {
    id: String,
    name: String,
    archived: bool,
    bot_is_member: bool,
    messages: Vec<Message>,
    last_post: Option<Instant>,
}

#[derive(Default)]
struct State {
    token: String,
    channels: Vec<Channel>,
    /// webhook path -> channel id
    webhooks: BTreeMap<String, String>,
    seq: u64,
    rate_limited: usize,
    /// Every n-th posted message is kept, then the connection is dropped without an answer.
    drop_after_post_every: Option<usize>,
    posted: usize,
}

impl State {
    fn messages_held(&self) -> usize {
        self.channels.iter().map(|c| c.messages.len()).sum()
    }

    fn channel_mut(&mut self, name_or_id: &str) -> Option<&mut Channel> {
        let key = name_or_id.trim_start_matches('#');
        self.channels
            .iter_mut()
            .find(|c| c.id == key || c.name == key)
    }
}

/// The fake workspace. Stops when dropped.
pub struct FakeSlack {
    server: Webhook,
    state: Arc<Mutex<State>>,
}

impl FakeSlack {
    /// A workspace whose bot token is `token`, with no channel yet.
    pub fn start(token: &str) -> Self {
        let server = Webhook::start();
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        server.respond_with(move |_, request| {
            let mut state = shared.lock().expect("fake slack state");
            let before = state.messages_held();
            let reply = answer(&mut state, request);
            if state.messages_held() > before {
                state.posted += 1;
                if state
                    .drop_after_post_every
                    .is_some_and(|n| state.posted.is_multiple_of(n))
                {
                    return reply.then_drop();
                }
            }
            reply
        });
        Self { server, state }
    }

    fn root(&self) -> String {
        self.server
            .url()
            .trim_end_matches("/hooks/activate")
            .to_owned()
    }

    /// Fault: every `n`-th message posted (by `chat.postMessage` or an incoming webhook) is
    /// kept in its channel, then the connection is dropped without an answer, as when Slack
    /// posts the message and the connection breaks before the answer.
    pub fn drop_after_post_every(&self, n: usize) {
        self.state
            .lock()
            .expect("fake slack state")
            .drop_after_post_every = Some(n.max(1));
    }

    /// The Web API base (`base_url` of the destination): `http://127.0.0.1:PORT/api`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.root())
    }

    /// Adds a channel the bot is a member of; returns its id.
    pub fn add_channel(&self, name: &str) -> String {
        let mut state = self.state.lock().expect("state");
        let id = format!("C{:08}", state.channels.len() + 1);
        state.channels.push(Channel {
            id: id.clone(),
            name: name.to_owned(),
            bot_is_member: true,
            ..Channel::default()
        });
        id
    }

    /// An incoming webhook posting to `channel` (which must exist): its full URL.
    pub fn add_webhook(&self, channel: &str) -> String {
        let mut state = self.state.lock().expect("state");
        let id = state
            .channel_mut(channel)
            .map(|c| c.id.clone())
            .unwrap_or_else(|| panic!("no channel {channel}"));
        let n = state.webhooks.len() + 1;
        let path = format!("/services/T0000FAKE/B{n:08}/hooksecret{n}Xq9rT2vLm");
        state.webhooks.insert(path.clone(), id);
        format!("{}{path}", self.root())
    }

    pub fn set_archived(&self, channel: &str, archived: bool) {
        let mut state = self.state.lock().expect("state");
        state.channel_mut(channel).expect("channel").archived = archived;
    }

    /// Every message of a channel, in the order posted.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        let mut state = self.state.lock().expect("state");
        state
            .channel_mut(channel)
            .map(|c| c.messages.clone())
            .unwrap_or_default()
    }

    /// How many posts were answered 429.
    pub fn rate_limited(&self) -> usize {
        self.state.lock().expect("state").rate_limited
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }
}

fn api_ok(body: Value) -> Reply {
    Reply::ok()
        .header("Content-Type", "application/json; charset=utf-8")
        .body(&body.to_string())
}

fn api_error(error: &str) -> Reply {
    api_ok(json!({"ok": false, "error": error}))
}

fn too_many(wait: Duration, api: bool) -> Reply {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let reply = Reply::status(429).header("Retry-After", &secs.to_string());
    if api {
        reply.body(r#"{"ok":false,"error":"ratelimited"}"#)
    } else {
        reply.body("rate_limited")
    }
}

fn answer(state: &mut State, request: &Request) -> Reply {
    if request.method != "POST" {
        return Reply::status(405);
    }
    let path = request.path.split('?').next().unwrap_or_default();
    match path {
        "/api/auth.test" => match check_auth(state, request) {
            Err(e) => api_error(e),
            Ok(()) => api_ok(json!({
                "ok": true, "url": "https://fake.slack.com/", "team": "Fake", "user": "activate-bot",
                "team_id": "T0000FAKE", "user_id": "U0000BOT", "bot_id": "B0000BOT",
            })),
        },
        "/api/chat.postMessage" => post_message(state, request),
        p if p.starts_with("/api/") => api_error("unknown_method"),
        p if p.starts_with("/services/") => incoming_webhook(state, p, request),
        _ => Reply::status(404),
    }
}

fn check_auth(state: &State, request: &Request) -> Result<(), &'static str> {
    let Some(auth) = request.header("authorization") else {
        return Err("not_authed");
    };
    match auth.strip_prefix("Bearer ") {
        Some(token) if token == state.token => Ok(()),
        _ => Err("invalid_auth"),
    }
}

/// The rate limit of a channel: `Err(wait)` when a post now would pass one per second.
fn take_slot(channel: &mut Channel) -> Result<(), Duration> {
    let now = Instant::now();
    if let Some(last) = channel.last_post {
        let since = now.duration_since(last);
        if since + TOLERANCE < MIN_INTERVAL {
            return Err(MIN_INTERVAL - since);
        }
    }
    channel.last_post = Some(now);
    Ok(())
}

fn post_message(state: &mut State, request: &Request) -> Reply {
    if let Err(e) = check_auth(state, request) {
        return api_error(e);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return api_error("invalid_json");
    };
    let Some(channel_key) = body["channel"].as_str() else {
        return api_error("channel_not_found");
    };
    state.seq += 1;
    let seq = state.seq;
    let mut rate_limited = false;
    let reply = {
        let Some(channel) = state.channel_mut(channel_key) else {
            return api_error("channel_not_found");
        };
        if !channel.bot_is_member {
            return api_error("not_in_channel");
        }
        if channel.archived {
            return api_error("is_archived");
        }
        match take_slot(channel) {
            Err(wait) => {
                rate_limited = true;
                too_many(wait, true)
            }
            Ok(()) => match validate(&body) {
                Err((error, details)) => {
                    let mut answer = json!({"ok": false, "error": error});
                    if !details.is_empty() {
                        answer["errors"] = json!(details);
                    }
                    api_ok(answer)
                }
                Ok(()) => {
                    let ts = ts(seq);
                    let text = body["text"].as_str().unwrap_or_default().to_owned();
                    channel.messages.push(Message {
                        ts: ts.clone(),
                        text: text.clone(),
                        blocks: body.get("blocks").cloned(),
                        via: "bot",
                        at: Instant::now(),
                    });
                    api_ok(json!({
                        "ok": true, "channel": channel.id, "ts": ts,
                        "message": {"type": "message", "subtype": "bot_message", "text": text, "ts": ts, "bot_id": "B0000BOT"},
                    }))
                }
            },
        }
    };
    if rate_limited {
        state.rate_limited += 1;
    }
    reply
}

fn incoming_webhook(state: &mut State, path: &str, request: &Request) -> Reply {
    let Some(channel_id) = state.webhooks.get(path).cloned() else {
        return Reply::status(404).body("no_service");
    };
    let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
        return Reply::status(400).body("invalid_payload");
    };
    if !body.is_object() {
        return Reply::status(400).body("invalid_payload");
    }
    state.seq += 1;
    let seq = state.seq;
    let mut rate_limited = false;
    let reply = {
        let Some(channel) = state.channel_mut(&channel_id) else {
            return Reply::status(404).body("channel_not_found");
        };
        if channel.archived {
            return Reply::status(410).body("channel_is_archived");
        }
        match take_slot(channel) {
            Err(wait) => {
                rate_limited = true;
                too_many(wait, false)
            }
            Ok(()) => match validate(&body) {
                Err((error, _)) => Reply::status(400).body(error),
                Ok(()) => {
                    channel.messages.push(Message {
                        ts: ts(seq),
                        text: body["text"].as_str().unwrap_or_default().to_owned(),
                        blocks: body.get("blocks").cloned(),
                        via: "webhook",
                        at: Instant::now(),
                    });
                    Reply::ok().body("ok")
                }
            },
        }
    };
    if rate_limited {
        state.rate_limited += 1;
    }
    reply
}

fn ts(seq: u64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}.{seq:06}")
}

/// Slack's checks on a message: `Err((error, details))`.
fn validate(body: &Value) -> Result<(), (&'static str, Vec<String>)> {
    let text = body["text"].as_str().unwrap_or_default();
    let blocks = body.get("blocks").filter(|b| !b.is_null());
    if text.trim().is_empty() && blocks.is_none() {
        return Err(("no_text", Vec::new()));
    }
    if text.chars().count() > 40_000 {
        return Err(("msg_too_long", Vec::new()));
    }
    if let Some(blocks) = blocks {
        let errors = block_errors(blocks);
        if !errors.is_empty() {
            return Err(("invalid_blocks", errors));
        }
    }
    Ok(())
}

fn block_errors(blocks: &Value) -> Vec<String> {
    let Some(list) = blocks.as_array() else {
        return vec!["expected an array of blocks [json-pointer:/blocks]".into()];
    };
    let mut errors = Vec::new();
    if list.len() > 50 {
        errors.push("no more than 50 items allowed [json-pointer:/blocks]".into());
    }
    for (i, block) in list.iter().enumerate() {
        let at = format!("/blocks/{i}");
        let kind = block["type"].as_str().unwrap_or_default();
        match kind {
            "section" => {
                if block.get("text").is_none() && block.get("fields").is_none() {
                    errors.push(format!(
                        "must provide either text or fields [json-pointer:{at}]"
                    ));
                }
                if let Some(t) = block.get("text") {
                    text_object(t, &format!("{at}/text"), 3000, false, &mut errors);
                }
            }
            "header" => match block.get("text") {
                Some(t) => text_object(t, &format!("{at}/text"), 150, true, &mut errors),
                None => errors.push(format!("missing required field: text [json-pointer:{at}]")),
            },
            "image" => {
                for field in ["image_url", "alt_text"] {
                    if block[field].as_str().is_none_or(str::is_empty)
                        && !(field == "image_url" && block.get("slack_file").is_some())
                    {
                        errors.push(format!(
                            "missing required field: {field} [json-pointer:{at}]"
                        ));
                    }
                }
            }
            "context" => match block["elements"].as_array() {
                Some(e) if !e.is_empty() && e.len() <= 10 => {}
                _ => errors.push(format!(
                    "must provide 1 to 10 elements [json-pointer:{at}/elements]"
                )),
            },
            "divider" | "actions" | "rich_text" | "input" | "file" | "video" | "markdown" => {}
            _ => errors.push(format!("unsupported type: {kind} [json-pointer:{at}/type]")),
        }
    }
    errors
}

fn text_object(t: &Value, at: &str, max: usize, plain_only: bool, errors: &mut Vec<String>) {
    let kind = t["type"].as_str().unwrap_or_default();
    let allowed = if plain_only {
        kind == "plain_text"
    } else {
        kind == "plain_text" || kind == "mrkdwn"
    };
    if !allowed {
        errors.push(format!(
            "failed to match all allowed schemas [json-pointer:{at}]"
        ));
    }
    match t["text"].as_str() {
        None | Some("") => errors.push(format!(
            "must be more than 0 characters [json-pointer:{at}/text]"
        )),
        Some(s) if s.chars().count() > max => errors.push(format!(
            "must be less than {} characters [json-pointer:{at}/text]",
            max + 1
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(url: &str, auth: Option<&str>, body: &Value) -> (u16, String) {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (addr, path) = rest.split_once('/').expect("a path");
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        let body = body.to_string();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "POST /{path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out[9..12].parse().expect("a status");
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[test]
    fn follows_slacks_contract() {
        let slack = FakeSlack::start("xoxb-good");
        slack.add_channel("cs-alerts");
        let api = format!("{}/chat.postMessage", slack.api_url());
        let msg = json!({"channel": "cs-alerts", "text": "hello"});
        assert!(post(&api, None, &msg).1.contains("not_authed"));
        assert!(
            post(&api, Some("xoxb-bad"), &msg)
                .1
                .contains("invalid_auth")
        );
        let (status, body) = post(&api, Some("xoxb-good"), &msg);
        assert_eq!(status, 200);
        assert!(body.contains(r#""ok":true"#), "{body}");
        let (status, _) = post(&api, Some("xoxb-good"), &msg);
        assert_eq!(status, 429, "two posts within a second");
        assert_eq!(slack.rate_limited(), 1);
        let nowhere = json!({"channel": "nowhere", "text": "x"});
        assert!(
            post(&api, Some("xoxb-good"), &nowhere)
                .1
                .contains("channel_not_found")
        );
        std::thread::sleep(Duration::from_millis(1000));
        let blocks: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        let (_, body) = post(
            &api,
            Some("xoxb-good"),
            &json!({"channel": "cs-alerts", "text": "x", "blocks": blocks}),
        );
        assert!(body.contains("invalid_blocks"), "{body}");
        assert_eq!(slack.messages("cs-alerts").len(), 1);

        let hook = slack.add_webhook("cs-alerts");
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            post(&hook, None, &json!({"text": ""})),
            (400, "no_text".into())
        );
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            post(&hook, None, &json!({"text": "hi"})),
            (200, "ok".into())
        );
        slack.set_archived("cs-alerts", true);
        assert_eq!(
            post(&hook, None, &json!({"text": "hi"})),
            (410, "channel_is_archived".into())
        );
        assert_eq!(slack.messages("cs-alerts").len(), 2);
    }
}

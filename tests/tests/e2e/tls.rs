//! TLS verification is on: a webhook served over HTTPS with a self-signed certificate (made
//! with the `openssl` CLI, served by Python's `ssl`) is refused by dbt-activate, naming the
//! certificate problem, and no request reaches the server; a client that trusts that
//! certificate does reach it, so the refusal is the verification and nothing else.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use dbt_activate_e2e::{Project, run_with_timeout};

use crate::common::*;

const SERVER: &str = r#"
import http.server, ssl, sys
log = open(sys.argv[3], "a")
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        log.write(self.command + " " + self.path + "\n"); log.flush()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    do_POST = do_HEAD = do_GET = answer
    def log_message(self, *args): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

const TRUSTING_CLIENT: &str = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
print(urllib.request.urlopen(sys.argv[2], data=b"{}", context=ctx, timeout=30).status)
"#;

struct HttpsServer {
    child: Child,
    url: String,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_https_server(dir: &std::path::Path) -> HttpsServer {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = run_with_timeout(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(
        out.code, 0,
        "the `openssl` CLI makes the test certificate (it comes with PostgreSQL's packages)\n{out}"
    );
    let mut child = Command::new(dbt_activate_e2e::python())
        .arg("-c")
        .arg(SERVER)
        .arg(&cert)
        .arg(&key)
        .arg(dir.join("requests.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the HTTPS server");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut port)
        .expect("the server's port");
    HttpsServer {
        child,
        url: format!("https://127.0.0.1:{}/hook", port.trim()),
    }
}

#[test]
fn a_self_signed_certificate_is_refused_and_nothing_is_sent() {
    let p = Project::new();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let server = start_https_server(dir.path());
    let log = dir.path().join("requests.log");

    // The server works for a client that trusts its certificate.
    let trusted = run_with_timeout(
        Command::new(dbt_activate_e2e::python())
            .arg("-c")
            .arg(TRUSTING_CLIENT)
            .arg(dir.path().join("cert.pem"))
            .arg(&server.url),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(trusted.stdout.trim(), "200", "{trusted}");
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(before.lines().count(), 1, "{before}");

    p.replace_in_file(
        "activate.yml",
        "batch_size: 50}",
        "batch_size: 50, max_retries: 1}",
    );
    let out = p
        .activate_cmd(&["run", "--target", "ci", "--select", "churn_alerts"])
        .env("ACTIVATE_WEBHOOK_URL", &server.url)
        .run();
    assert_ne!(
        out.code, 0,
        "an unverifiable certificate fails the run\n{out}"
    );
    assert!(!out.text().contains("panicked"), "{out}");
    let text = out.text().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer"),
        "the error names the certificate problem\n{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap_or_default(),
        before,
        "no request got past the TLS handshake"
    );
    if let Ok(results) = std::fs::read_to_string(p.file("target/activate_results.json")) {
        let results: serde_json::Value = serde_json::from_str(&results).expect("JSON");
        for r in results["results"].as_array().into_iter().flatten() {
            assert_counts(r, 0, 0, 0);
        }
    }
}

/// The postgres destination speaks TLS by `sslmode` as libpq does: `verify-full` with the
/// CA that signed the test server's certificate (which names `localhost`) lands the rows; a
/// CA that did not sign it stops the run before anything is sent.
#[test]
fn the_postgres_destination_verifies_the_server_certificate_under_verify_full() {
    let p = Project::new();
    let ca = std::env::var("ACTIVATE_TEST_PG_CA").expect("ACTIVATE_TEST_PG_CA (scripts/test.sh)");
    let other = std::env::var("ACTIVATE_TEST_PG_OTHER_CA")
        .expect("ACTIVATE_TEST_PG_OTHER_CA (scripts/test.sh)");
    // postgres://postgres@127.0.0.1:<port>/<db>, spelled with `localhost`, as the cert says.
    let url = p.pg.url().replace("@127.0.0.1:", "@localhost:");
    let crm = format!(
        "crm:       {{type: postgres, url: \"{url}\", schema: crm, sslmode: verify-full, sslrootcert: \"{ca}\"}}"
    );
    p.replace_in_file(
        "activate.yml",
        "crm:       {type: postgres, url: \"{{ env_var('ACTIVATE_PG_URL') }}\", schema: crm}",
        &crm,
    );
    let out = p.activate(&["run", "--target", "ci", "--select", "enriched_leads"]);
    out.assert_success();
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));

    // A CA that did not sign the server's certificate: refused, nothing sent.
    p.pg.execute("TRUNCATE crm.\"Lead\"");
    p.activate(&["reset", "--target", "ci", "--select", "enriched_leads"])
        .assert_success();
    p.replace_in_file("activate.yml", &ca, &other);
    let out = p.activate(&["run", "--target", "ci", "--select", "enriched_leads"]);
    assert_ne!(out.code, 0, "{out}");
    out.assert_contains("certificate");
    assert!(leads_in_postgres(&p).is_empty(), "nothing is sent");
}

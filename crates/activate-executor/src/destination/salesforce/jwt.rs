//! The OAuth 2.0 JWT bearer flow's assertion (Salesforce, "OAuth 2.0 JWT Bearer Flow for
//! Server-to-Server Integration"): header `{"alg":"RS256"}`, claims `iss` (the connected app's
//! consumer key), `sub` (the username), `aud` (the login server) and `exp` (seconds since the
//! epoch, at most three minutes ahead), each part base64url-encoded without padding, signed
//! with RSASSA-PKCS1-v1_5 over SHA-256 by the private key whose certificate the connected app
//! holds.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// How far ahead `exp` is set; Salesforce accepts at most three minutes.
pub const LIFETIME_SECONDS: u64 = 150;

/// An RSA private key that signs assertions. Its text never leaves this type (no `Debug`).
pub struct Signer {
    key: RsaKeyPair,
}

impl Signer {
    /// A key from PEM text: `-----BEGIN PRIVATE KEY-----` (PKCS #8, what `openssl req
    /// -newkey` writes) or `-----BEGIN RSA PRIVATE KEY-----` (PKCS #1, `openssl genrsa
    /// -traditional`). The error names what is wrong, never the key's text.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let pem = pem.trim();
        if pem.contains("ENCRYPTED") {
            return Err(
                "the private key is encrypted; give the unencrypted key (openssl pkcs8 -nocrypt)"
                    .to_owned(),
            );
        }
        let (label, body) = pem_body(pem).ok_or_else(|| {
            "not a PEM private key (expected a `-----BEGIN PRIVATE KEY-----` or `-----BEGIN RSA PRIVATE KEY-----` block)"
                .to_owned()
        })?;
        let der = STANDARD
            .decode(body)
            .map_err(|_| format!("the {label} block is not valid base64"))?;
        let key = match label {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            other => {
                return Err(format!(
                    "a `{other}` block is not an RSA private key (Salesforce's JWT bearer flow needs RSA)"
                ));
            }
        }
        .map_err(|e| format!("the {label} is not a usable RSA key ({e})"))?;
        Ok(Self { key })
    }

    /// `header.claims.signature` for `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
    pub fn assertion(
        &self,
        client_id: &str,
        username: &str,
        audience: &str,
        now_seconds: u64,
    ) -> Result<String, String> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": username,
            "aud": audience,
            "exp": now_seconds + LIFETIME_SECONDS,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the JWT assertion failed".to_owned())?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The label and base64 body of the first PEM block.
fn pem_body(pem: &str) -> Option<(&str, String)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let (label, rest) = rest.split_once("-----")?;
    let end = rest.find(&format!("-----END {label}-----"))?;
    // A key pasted into a CI secret may have spaces or literal `\n` for its line breaks.
    let body: String = rest[..end]
        .replace("\\n", "\n")
        .lines()
        // Headers of old encrypted PEM (`Proc-Type: ...`) are not base64.
        .filter(|l| !l.contains(':'))
        .flat_map(str::chars)
        .filter(|c| !c.is_whitespace())
        .collect();
    Some((label, body))
}

//! Key-pair authentication: a JWT signed with the user's RSA private key (RS256), as Snowflake
//! documents it: `iss` = `ACCOUNT.USER.SHA256:<base64 SHA-256 of the public key's DER>`,
//! `sub` = `ACCOUNT.USER`, valid for one hour.

use base64::Engine as _;
use ring::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::Digest as _;

/// The PEM's base64 body to DER; only unencrypted PKCS#8 (`BEGIN PRIVATE KEY`) is read.
pub fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return Err("the private key is encrypted; dbt-activate reads unencrypted PKCS#8 keys only (decrypt it with `openssl pkcs8 -topk8 -nocrypt`)".into());
    }
    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return Err(
            "the private key is in PKCS#1 form; convert it with `openssl pkcs8 -topk8 -nocrypt`"
                .into(),
        );
    }
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the private key is not a PEM (`-----BEGIN PRIVATE KEY-----`) file".to_owned())
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_length(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// SubjectPublicKeyInfo DER of an RSA public key given as PKCS#1 `RSAPublicKey` DER.
fn spki(rsa_public_key: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    let algorithm = der(
        0x30,
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ],
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa_public_key);
    let mut content = algorithm;
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

/// Snowflake's account part of the JWT: the account locator, upper-cased, without region.
fn account_part(account: &str) -> String {
    account
        .split('.')
        .next()
        .unwrap_or(account)
        .to_ascii_uppercase()
}

/// The login JWT for `account`/`user`, signed with `pkcs8` (DER), issued at `now` (seconds).
pub fn login_jwt(account: &str, user: &str, pkcs8: &[u8], now: u64) -> Result<String, String> {
    let key = RsaKeyPair::from_pkcs8(pkcs8)
        .map_err(|e| format!("the private key is not an RSA PKCS#8 key ({e})"))?;
    let fingerprint = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(spki(key.public_key().as_ref())));
    let qualified = format!("{}.{}", account_part(account), user.to_ascii_uppercase());
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = url.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": format!("{qualified}.SHA256:{fingerprint}"),
        "sub": qualified,
        "iat": now,
        "exp": now + 3600,
    });
    let payload = url.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the login token failed".to_owned())?;
    Ok(format!("{signing_input}.{}", url.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_part_drops_the_region() {
        assert_eq!(account_part("xy12345.eu-central-1"), "XY12345");
        assert_eq!(account_part("myorg-acct"), "MYORG-ACCT");
    }

    #[test]
    fn encrypted_and_pkcs1_keys_are_refused_with_the_fix() {
        let err = pkcs8_der("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(err.contains("-nocrypt"));
        let err = pkcs8_der("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n").unwrap_err();
        assert!(err.contains("pkcs8"));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}

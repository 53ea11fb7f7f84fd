//! Client-side helpers for talking to a sandbox as an independent client would: starting
//! one, the world it serves, plain JSON GETs, and Google service-account auth as Google's
//! client libraries do it. mailroom's own integration tests include this file too
//! (`tests/it/support`), so both suites start and address sandboxes the same way.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_sandbox::world::{World, WorldParams};
use mailroom_sandbox::{RunningSandbox, SandboxOptions};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};

/// A sandbox on a free local port.
pub async fn sandbox(options: SandboxOptions) -> RunningSandbox {
    let addr = "127.0.0.1:0".parse().expect("address");
    RunningSandbox::start(addr, options)
        .await
        .expect("sandbox starts")
}

pub const SMALL_SEED: u64 = 42;
pub const SMALL_CUSTOMERS: u32 = 300;

/// A small world (seed 42, 300 customers) with the real services' rate limits.
pub async fn small_sandbox() -> RunningSandbox {
    sandbox(SandboxOptions::new(SMALL_SEED, SMALL_CUSTOMERS)).await
}

/// The world [`small_sandbox`] serves, for computing what its answers must contain.
pub fn small_world() -> World {
    World::new(WorldParams {
        seed: SMALL_SEED,
        customers: SMALL_CUSTOMERS,
        anchor: WorldParams::default_anchor(),
    })
}

/// GET `url` with optional extra headers; returns status, headers and parsed JSON (or
/// `Null` when the body is not JSON).
pub async fn get_json(
    url: &str,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, json)
}

/// A JWT-bearer assertion signed with the key file's private key, as Google's client
/// libraries build it.
pub fn assertion(key_file: &Value, claims: Value) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(key_file["private_key"].as_str().expect("pem"))
        .expect("PKCS#8 key");
    let header = URL_SAFE_NO_PAD.encode(
        json!({ "alg": "RS256", "typ": "JWT", "kid": key_file["private_key_id"] }).to_string(),
    );
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = SigningKey::<Sha256>::new(key).sign(format!("{header}.{body}").as_bytes());
    format!(
        "{header}.{body}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// The claims of a token request for `scope`, valid for an hour from now.
pub fn claims(key_file: &Value, scope: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "iss": key_file["client_email"], "scope": scope, "aud": key_file["token_uri"], "iat": now, "exp": now + 3600 })
}

/// Trades a signed assertion for a token at the key file's `token_uri`.
pub async fn exchange(key_file: &Value, jwt: &str) -> (reqwest::StatusCode, Value) {
    let token_uri = key_file["token_uri"].as_str().expect("token_uri");
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", jwt),
    ];
    let response = reqwest::Client::new()
        .post(token_uri)
        .form(&form)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// The sandbox's service-account key file.
pub async fn key_file(base: &str) -> Value {
    get_json(&format!("{base}/_sandbox/service-account.json"), &[])
        .await
        .2
}

/// An access token for `scope` from the sandbox at `base`.
pub async fn token(base: &str, scope: &str) -> String {
    let key = key_file(base).await;
    let (status, body) = exchange(&key, &assertion(&key, claims(&key, scope))).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

/// Requests the sandbox saw for endpoints whose pattern contains `prefix`: (all, 429s).
pub async fn requests(base: &str, prefix: &str) -> (u64, u64) {
    let (_, _, state) = get_json(&format!("{base}/_sandbox/state"), &[]).await;
    let mut total = (0, 0);
    for (endpoint, count) in state["requests"].as_object().expect("request counts") {
        if endpoint.contains(prefix) {
            total.0 += count["requests"].as_u64().unwrap_or(0);
            total.1 += count["rate_limited"].as_u64().unwrap_or(0);
        }
    }
    total
}

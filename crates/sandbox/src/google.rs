//! Google's OAuth 2.0 token endpoint (`/oauth2/token`) and the service-account key it
//! accepts, shared by the Sheets and BigQuery simulators.
//!
//! The sandbox's service account has an RSA key derived from the world seed (generated on
//! first use, never stored in the repository). Its key file — the JSON Google issues, with
//! `token_uri` pointing at this sandbox — is served at `/_sandbox/service-account.json` and
//! written by `mailroom sandbox`. The token endpoint takes the JWT-bearer grant, checks the
//! RS256 signature, issuer, audience, lifetime and scope the way Google does, and issues
//! short-lived bearer tokens that the Google APIs then require.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

use super::{Shared, json_response, lock};

/// The sandbox service account.
pub const CLIENT_EMAIL: &str = "mailroom-sandbox@sandbox-project.iam.gserviceaccount.com";
/// Its project.
pub const PROJECT_ID: &str = "sandbox-project";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// An issued access token.
#[derive(Debug, Clone)]
struct Issued {
    expires: Instant,
    scopes: Vec<String>,
}

/// The service account's key and the tokens issued so far.
pub struct GoogleAuth {
    seed: u64,
    key: OnceLock<RsaPrivateKey>,
    tokens: Mutex<BTreeMap<String, Issued>>,
}

impl GoogleAuth {
    /// Auth for a world with this seed.
    pub fn new(seed: u64) -> Self {
        GoogleAuth {
            seed,
            key: OnceLock::new(),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// Forgets every issued token (the key stays: it belongs to the seed).
    pub fn reset(&self) {
        lock(&self.tokens).clear();
    }

    fn key(&self) -> &RsaPrivateKey {
        self.key.get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x6f61_7574_6832);
            // A 2048-bit key always generates; failure would be a bug in the rsa crate.
            RsaPrivateKey::new(&mut rng, 2048)
                .unwrap_or_else(|err| panic!("generating the sandbox RSA key failed: {err}"))
        })
    }

    /// The service-account key file, with `token_uri` at `base` (the sandbox's address).
    pub fn key_file(&self, base: &str) -> Value {
        let pem = self
            .key()
            .to_pkcs8_pem(LineEnding::LF)
            .map(|p| p.to_string())
            .unwrap_or_default();
        json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": format!("sandbox-{:08x}", self.seed),
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000042",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{base}/oauth2/token"),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", CLIENT_EMAIL.replace('@', "%40")),
            "universe_domain": "googleapis.com",
        })
    }

    /// Checks a request's bearer token against the issued ones and the scopes an API takes.
    pub fn check(&self, headers: &HeaderMap, scopes: &[&str]) -> Result<(), Response<Body>> {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(google_error(
                StatusCode::UNAUTHORIZED,
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
                "unauthorized",
            ));
        };
        let tokens = lock(&self.tokens);
        let Some(issued) = tokens.get(token).filter(|t| t.expires > Instant::now()) else {
            return Err(google_error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "UNAUTHENTICATED",
                "authError",
            ));
        };
        let allowed = issued.scopes.iter().any(|s| {
            scopes.contains(&s.as_str()) || s == "https://www.googleapis.com/auth/cloud-platform"
        });
        if !allowed {
            return Err(google_error(
                StatusCode::FORBIDDEN,
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
                "insufficientPermissions",
            ));
        }
        Ok(())
    }

    fn issue(&self, assertion: &str) -> Result<Value, (&'static str, String)> {
        let invalid = |why: &str| ("invalid_grant", why.to_string());
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
            return Err(invalid("Invalid JWT: expected three dot-separated parts."));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok();
        let header: Value = decode(header_b64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("Invalid JWT: the header is not base64url JSON."))?;
        let claims: Value = decode(claims_b64)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("Invalid JWT: the claim set is not base64url JSON."))?;
        if header["alg"] != "RS256" {
            return Err(invalid("Invalid JWT: the algorithm must be RS256."));
        }
        let signature = decode(signature_b64)
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .ok_or_else(|| invalid("Invalid JWT Signature."))?;
        let verifier = VerifyingKey::<Sha256>::new(RsaPublicKey::from(self.key()));
        verifier
            .verify(format!("{header_b64}.{claims_b64}").as_bytes(), &signature)
            .map_err(|_| invalid("Invalid JWT Signature."))?;
        if claims["iss"] != CLIENT_EMAIL {
            return Err(invalid("Invalid grant: account not found"));
        }
        if !claims["aud"]
            .as_str()
            .is_some_and(|aud| aud.ends_with("/oauth2/token") || aud.ends_with("/token"))
        {
            return Err(invalid("Invalid JWT: Failed audience check."));
        }
        let now = chrono::Utc::now().timestamp();
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if exp <= now || exp - iat > 3600 || iat > now + 300 {
            return Err(invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let scopes: Vec<String> = claims["scope"]
            .as_str()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if scopes.is_empty() {
            return Err((
                "invalid_scope",
                "Empty or missing scope not allowed.".to_string(),
            ));
        }
        let mut tokens = lock(&self.tokens);
        let token = format!(
            "ya29.sandbox.{:04}.{:016x}",
            tokens.len() + 1,
            self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tokens.len() as u64
        );
        tokens.insert(
            token.clone(),
            Issued {
                expires: Instant::now() + TOKEN_LIFETIME,
                scopes,
            },
        );
        Ok(
            json!({ "access_token": token, "expires_in": TOKEN_LIFETIME.as_secs(), "token_type": "Bearer" }),
        )
    }
}

/// Google's JSON error envelope.
pub fn google_error(
    status: StatusCode,
    message: &str,
    code_name: &str,
    reason: &str,
) -> Response<Body> {
    json_response(
        status,
        &json!({ "error": { "code": status.as_u16(), "message": message, "errors": [{ "message": message, "domain": "global", "reason": reason }], "status": code_name } }),
    )
}

/// The error shape the fault plan uses for Google APIs.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let (name, reason) = match status.as_u16() {
        429 => ("RESOURCE_EXHAUSTED", "rateLimitExceeded"),
        503 => ("UNAVAILABLE", "backendError"),
        _ => ("INTERNAL", "backendError"),
    };
    google_error(status, message, name, reason)
}

/// The token endpoint's route.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/oauth2/token", post(token))
}

async fn token(State(shared): State<Arc<Shared>>, body: String) -> Response<Body> {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != GRANT_TYPE {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "unsupported_grant_type", "error_description": format!("Invalid grant_type: {grant}") }),
        );
    }
    match shared
        .google
        .issue(form.get("assertion").map(String::as_str).unwrap_or(""))
    {
        Ok(answer) => json_response(StatusCode::OK, &answer),
        Err((code, description)) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": code, "error_description": description }),
        ),
    }
}

//! Google service-account OAuth: a JWT-bearer assertion signed (RS256) with the key file's
//! private key is exchanged at the key file's `token_uri` for a bearer token, which is cached
//! and refreshed a minute before it expires. Honouring `token_uri` is what lets the sandbox's
//! key file work unchanged.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use url::Url;

use crate::error::{Classify, ErrorKind};
use crate::http::{Auth, Body, Call, HttpClient, HttpError, RetryPolicy, Service};
use crate::secret::Secret;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A token is renewed this long before Google says it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Why a key file or a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum GoogleAuthError {
    /// The key file is missing, unreadable or not a service-account key.
    #[error("service-account key file {file}: {message}")]
    KeyFile {
        /// The file, or where the key came from.
        file: String,
        /// What is wrong with it.
        message: String,
    },
    /// The token endpoint refused or could not be reached.
    #[error("getting a Google access token: {0}")]
    Token(#[from] HttpError),
}

impl Classify for GoogleAuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            GoogleAuthError::KeyFile { .. } => ErrorKind::Config,
            // The token endpoint refusing the key (400 `invalid_grant`: a wrong, revoked or
            // expired key; 401, 403) is the user's to fix; 429, 5xx and transport failures pass.
            GoogleAuthError::Token(e)
                if e.status
                    .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
            {
                ErrorKind::Config
            }
            GoogleAuthError::Token(e) => e.kind(),
        }
    }
}

/// A service account's key, as in the JSON key file Google issues.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The account (`…@….iam.gserviceaccount.com`).
    pub client_email: String,
    /// The project the key belongs to.
    pub project_id: Option<String>,
    /// Where tokens are issued.
    pub token_uri: Url,
    private_key: RsaPrivateKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Reads a key file.
    pub fn read(path: &Path) -> Result<Self, GoogleAuthError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| GoogleAuthError::KeyFile {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses a key file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, GoogleAuthError> {
        let bad = |message: String| GoogleAuthError::KeyFile {
            file: file.to_string(),
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let field = |name: &str| {
            value[name].as_str().map(str::to_string).ok_or_else(|| {
                bad(format!(
                    "`{name}` is missing; is this a service-account key?"
                ))
            })
        };
        if value["type"] != "service_account" {
            return Err(bad(format!(
                "`type` is {}, not \"service_account\"",
                value["type"]
            )));
        }
        let token_uri = field("token_uri")?;
        let token_uri =
            Url::parse(&token_uri).map_err(|e| bad(format!("`token_uri` is not a URL: {e}")))?;
        let private_key = RsaPrivateKey::from_pkcs8_pem(&field("private_key")?)
            .map_err(|e| bad(format!("`private_key` is not a PKCS#8 RSA key: {e}")))?;
        Ok(ServiceAccountKey {
            client_email: field("client_email")?,
            project_id: value["project_id"].as_str().map(str::to_string),
            token_uri,
            private_key,
        })
    }

    /// The signed assertion asking for `scopes`, valid for an hour from `issued_at`.
    fn assertion(&self, scopes: &str, issued_at: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "RS256", "typ": "JWT" }).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({
                "iss": self.client_email,
                "scope": scopes,
                "aud": self.token_uri.as_str(),
                "iat": issued_at,
                "exp": issued_at + 3600,
            })
            .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let signature = SigningKey::<Sha256>::new(self.private_key.clone())
            .sign(signing_input.as_bytes())
            .to_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// Bearer tokens for one service account and set of scopes, cached until shortly before
/// they expire.
#[derive(Debug)]
pub struct GoogleTokens {
    key: ServiceAccountKey,
    scopes: String,
    client: HttpClient,
    retry: RetryPolicy,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl GoogleTokens {
    /// Tokens for `key` with these scopes.
    pub fn new(
        key: ServiceAccountKey,
        scopes: &[&str],
        client: HttpClient,
        retry: RetryPolicy,
    ) -> Self {
        GoogleTokens {
            key,
            scopes: scopes.join(" "),
            client,
            retry,
            cached: Mutex::new(None),
        }
    }

    /// The key's project.
    pub fn key(&self) -> &ServiceAccountKey {
        &self.key
    }

    /// A valid bearer token: the cached one, or a new one.
    pub async fn token(&self) -> Result<Secret, GoogleAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let service = Service {
            name: "Google OAuth",
            base_url: self.key.token_uri.clone(),
            auth: Auth::None,
            retry: self.retry,
            budget: None,
        };
        let assertion = self
            .key
            .assertion(&self.scopes, chrono::Utc::now().timestamp());
        // Asking for a token again is harmless.
        let call = Call::post(
            "",
            Body::Form(vec![
                ("grant_type".into(), GRANT_TYPE.into()),
                ("assertion".into(), assertion),
            ]),
        )
        .idempotent();
        let response = self.client.send(&service, &call).await?;
        let answer: Value = response.json().await.map_err(|e| HttpError {
            service: "Google OAuth",
            method: "POST",
            endpoint: self.key.token_uri.path().to_string(),
            status: None,
            request_id: None,
            message: format!("the token answer is not JSON: {e}"),
            attempts: 1,
            unanswered: false,
        })?;
        let token = answer["access_token"].as_str().unwrap_or_default();
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(3600));
        let token = Secret::new(token);
        *cached = Some((
            token.clone(),
            Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
        ));
        Ok(token)
    }
}

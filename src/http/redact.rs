//! Keeps secrets out of messages and logs: query parameters that carry credentials are
//! replaced by `***` wherever a URL is shown, and a URL that is itself the credential is
//! not shown at all.

use url::Url;

use super::{Auth, Service};

/// Query parameters that carry credentials in the APIs mailroom calls.
const SECRET_PARAMS: [&str; 13] = [
    "token",
    "api_key",
    "apikey",
    "key",
    "access_token",
    "password",
    "signature",
    "sig",
    "assertion",
    // Google Cloud Storage's V4 signed URLs (Shopify's bulk-result links carry them).
    "x-goog-signature",
    "x-goog-credential",
    "x-amz-signature",
    // A resumable upload session's URL takes data without any other credential.
    "upload_id",
];

/// How a call's URL is shown in errors and logs: path and query, redacted; nothing of a
/// URL that is the credential itself ([`Auth::SecretUrl`]).
pub fn endpoint(service: &Service, url: &Url) -> String {
    match service.auth {
        Auth::SecretUrl => "(its secret URL)".to_string(),
        _ => path_and_query(url),
    }
}

/// The URL's path and query, with credential parameters redacted.
pub fn path_and_query(url: &Url) -> String {
    let mut shown = url.path().to_string();
    let pairs: Vec<String> = url
        .query_pairs()
        .map(|(k, v)| {
            if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    if !pairs.is_empty() {
        shown.push('?');
        shown.push_str(&pairs.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_parameters_are_hidden_and_the_rest_kept() {
        let url =
            Url::parse("https://go.smartrmail.com/api/v1/lists?token=sk_live_1&page=2&Api_Key=x")
                .expect("url");
        assert_eq!(
            path_and_query(&url),
            "/api/v1/lists?token=***&page=2&Api_Key=***"
        );
        // A signed storage link (Shopify's bulk results) would hand out a shop's orders.
        let signed = Url::parse(
            "https://storage.googleapis.com/b/r.jsonl?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%40p%2F20261201&X-Goog-Signature=abc123",
        )
        .expect("url");
        assert_eq!(
            path_and_query(&signed),
            "/b/r.jsonl?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=***&X-Goog-Signature=***"
        );
        let plain = Url::parse("https://api.smile.io/v1/customers").expect("url");
        assert_eq!(path_and_query(&plain), "/v1/customers");
    }
}

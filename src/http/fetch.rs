//! Fetching answers whole: [`fetch_parsed`] re-asks for an answer whose body breaks off or
//! does not parse (its records are never skipped), [`fetch_page`] adds the paginator's check
//! (errors sent with HTTP 200, Shopify's THROTTLED), and [`fetch_pages`] drives a paginator,
//! handing pages to a bounded channel so fetching waits while decoding catches up.

use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::page::{Page, RecordsAt};
use super::paginate::{Paginator, Verdict};
use super::{Call, HttpClient, HttpError, Service, redact};

/// Times a page whose body breaks off or does not parse is asked for again.
const BAD_PAGE_RETRIES: u32 = 3;

/// Why paging stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The call failed (after the client's retries).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The answers kept breaking off or not parsing.
    #[error("{service} {endpoint}: the answer was not a readable page {attempts} times: {reason}")]
    Unreadable {
        /// The service.
        service: &'static str,
        /// The endpoint, credentials redacted.
        endpoint: String,
        /// Why.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The service answered with an error inside a success (GraphQL `errors`).
    #[error("{service} {endpoint}: {message}")]
    Rejected {
        /// The service.
        service: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The service's errors.
        message: String,
    },
    /// Whoever took the pages stopped taking them.
    #[error("the page consumer stopped")]
    Closed,
}

impl crate::error::Classify for PageError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            PageError::Http(err) => err.kind(),
            PageError::Unreadable { .. } => ErrorKind::Transient,
            PageError::Rejected { .. } => ErrorKind::Terminal,
            PageError::Closed => ErrorKind::Bug,
        }
    }
}

/// What a parser made of one answer's text.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A good answer.
    Ok(T),
    /// Not a readable answer (cut off, malformed): ask again.
    Bad(String),
    /// Ask again after this wait (a cost budget).
    Wait(Duration),
    /// An error the service sent with a success status.
    Fail(String),
}

/// Asks for one answer until its body arrives whole and `parse` accepts it; answers that
/// break off or do not parse are asked for again a few times, then fail as transient.
pub async fn fetch_parsed<T>(
    client: &HttpClient,
    service: &Service,
    call: &Call,
    mut parse: impl FnMut(String) -> Parsed<T>,
) -> Result<T, PageError> {
    let mut bad_pages = 0;
    loop {
        let response = client.send(service, call).await?;
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("the answer broke off: {err}"))
            .and_then(|bytes| {
                String::from_utf8(bytes.into()).map_err(|_| "the answer is not UTF-8".to_string())
            });
        let problem = match body {
            Err(problem) => problem,
            Ok(text) => match parse(text) {
                Parsed::Ok(value) => return Ok(value),
                Parsed::Bad(reason) => reason,
                Parsed::Wait(wait) => {
                    tracing::info!(
                        service = service.name,
                        wait_ms = wait.as_millis() as u64,
                        "throttled by the service's cost budget; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Parsed::Fail(message) => {
                    return Err(PageError::Rejected {
                        service: service.name,
                        endpoint: redacted_endpoint(service, call),
                        message,
                    });
                }
            },
        };
        bad_pages += 1;
        if bad_pages > BAD_PAGE_RETRIES {
            return Err(PageError::Unreadable {
                service: service.name,
                endpoint: redacted_endpoint(service, call),
                reason: problem,
                attempts: bad_pages,
            });
        }
        tracing::warn!(service = service.name, endpoint = %redacted_endpoint(service, call), reason = %problem, "unreadable answer; asking for it again");
        let wait = service
            .retry
            .base
            .saturating_mul(1 << bad_pages)
            .min(service.retry.cap);
        tokio::time::sleep(wait).await;
    }
}

/// Asks for one page until it arrives whole, parses, and the paginator accepts it.
pub async fn fetch_page(
    client: &HttpClient,
    service: &Service,
    call: &Call,
    at: RecordsAt,
    paginator: &mut dyn Paginator,
) -> Result<Page, PageError> {
    fetch_parsed(client, service, call, |text| match Page::parse(text, at) {
        Err(reason) => Parsed::Bad(reason),
        Ok(page) => match paginator.check(&page) {
            Verdict::Accept => Parsed::Ok(page),
            Verdict::RetryAfter(wait) => Parsed::Wait(wait),
            Verdict::Fail(message) => Parsed::Fail(message),
        },
    })
    .await
}

/// One JSON object (a Dotdigital campaign summary), as text; an answer that breaks off or
/// is not an object is asked for again.
pub async fn fetch_object(
    client: &HttpClient,
    service: &Service,
    call: &Call,
) -> Result<String, PageError> {
    fetch_parsed(client, service, call, |text| {
        match serde_json::from_str::<&RawValue>(&text) {
            Ok(raw) if raw.get().starts_with('{') => Parsed::Ok(text),
            Ok(_) => Parsed::Bad("expected a JSON object".into()),
            Err(e) => Parsed::Bad(format!("not valid JSON: {e}")),
        }
    })
    .await
}

fn redacted_endpoint(service: &Service, call: &Call) -> String {
    redact::endpoint(service, &HttpClient::url(service, call))
}

/// A collection read page by page: each [`Pages::next`] fetches one page and asks the
/// paginator for the call after it, pausing first when the paginator says so.
pub struct Pages<'a> {
    client: &'a HttpClient,
    service: &'a Service,
    at: RecordsAt,
    paginator: &'a mut dyn Paginator,
    next: Option<Call>,
    started: bool,
}

impl<'a> Pages<'a> {
    /// The pages of `call`'s collection, records at `at`, paged by `paginator`.
    pub fn new(
        client: &'a HttpClient,
        service: &'a Service,
        call: Call,
        at: RecordsAt,
        paginator: &'a mut dyn Paginator,
    ) -> Self {
        let first = paginator.first(call);
        Pages {
            client,
            service,
            at,
            paginator,
            next: Some(first),
            started: false,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Page>, PageError> {
        let Some(call) = self.next.take() else {
            return Ok(None);
        };
        if self.started
            && let Some(wait) = self.paginator.pause()
        {
            tokio::time::sleep(wait).await;
        }
        self.started = true;
        let page = fetch_page(self.client, self.service, &call, self.at, self.paginator).await?;
        self.next = self.paginator.next(call, &page);
        Ok(Some(page))
    }
}

/// Fetches every page from `call` on and sends each into `pages`; returns the page count.
pub async fn fetch_pages(
    client: &HttpClient,
    service: &Service,
    call: Call,
    at: RecordsAt,
    paginator: &mut dyn Paginator,
    pages: &mpsc::Sender<Page>,
) -> Result<u64, PageError> {
    let mut reader = Pages::new(client, service, call, at, paginator);
    let mut count = 0;
    while let Some(page) = reader.next().await? {
        count += 1;
        pages.send(page).await.map_err(|_| PageError::Closed)?;
    }
    Ok(count)
}

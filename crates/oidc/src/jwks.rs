//! The issuer's published signing keys (its JWKS), cached.
//!
//! One fetch at a time (`refreshing`), and never two within `min_refresh`
//! (`last_attempt`), whatever the tokens ask for: unknown key ids are cheap
//! for an attacker to make up, so they may not turn into requests to the
//! issuer one for one. A token with an unknown key id waits (at most
//! `min_refresh`) for the next allowed fetch instead of being refused: the
//! key may have been rotated in just after our last fetch. Keys fetched more than `cache_for` ago are fetched
//! again on their next use; if that fails, the keys held keep serving (an
//! issuer that is briefly down does not lock every caller out), and the
//! attempt is repeated after `min_refresh`.
//!
//! At most [`MAX_WAITING`] tokens with unknown key ids wait at once; more are
//! refused at once: made-up key ids cost nothing to send, and each waiting
//! request holds one of a gateway's in-flight slots for up to `min_refresh`.

use crate::OidcError;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tokens with unknown key ids that may wait for the next fetch at once.
pub const MAX_WAITING: usize = 64;

/// One verification key and the one algorithm it verifies.
pub struct Key {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

/// The cached keys of one JWKS URL.
pub struct KeyCache {
    http: reqwest::Client,
    url: String,
    cache_for: Duration,
    min_refresh: Duration,
    /// The keys and when they were fetched. Written only while `refreshing`
    /// is held; read by every verification (briefly, never across an await).
    state: RwLock<State>,
    /// Held by the one task fetching; others wait for it and then use its result.
    refreshing: tokio::sync::Mutex<()>,
    /// Successful fetches so far (observable by tests and metrics).
    fetches: AtomicU64,
    /// Lookups of unknown key ids waiting for a fetch now.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<Key>>,
    /// When the keys held were fetched.
    fetched_at: Option<Instant>,
    /// When the last fetch was attempted, successful or not.
    last_attempt: Option<Instant>,
}

impl KeyCache {
    pub fn new(
        http: reqwest::Client,
        url: String,
        cache_for: Duration,
        min_refresh: Duration,
    ) -> KeyCache {
        KeyCache {
            http,
            url,
            cache_for,
            min_refresh,
            state: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Successful fetches of the key set so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The key `kid`: from the cache while it is fresh. A known key whose
    /// cache has expired: the set is fetched again if a fetch is allowed now
    /// (else the held key serves). An unknown key id: the set is fetched again
    /// as soon as a fetch is allowed — waiting for that, at most
    /// `min_refresh`, rather than refusing a token signed by a key rotated in
    /// just after our last fetch.
    pub async fn get(&self, kid: &str) -> Option<Arc<Key>> {
        let (held, fresh) = self.lookup(kid);
        if held.is_some() && fresh {
            return held;
        }
        if held.is_some() {
            self.refresh(false).await;
        } else {
            let Some(_waiting) = Waiting::join(&self.waiting) else {
                return None; // enough callers wait already (see the module header)
            };
            self.refresh(true).await;
        }
        self.lookup(kid).0
    }

    fn lookup(&self, kid: &str) -> (Option<Arc<Key>>, bool) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let fresh = state
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.cache_for);
        (state.keys.get(kid).cloned(), fresh)
    }

    /// Fetches the set, one task at a time, never twice within
    /// `min_refresh`. A task that waited while another fetched uses that
    /// fetch. When the interval has not passed yet, `wait` says whether to
    /// wait for it (unknown key) or to go on with the keys held (expired
    /// cache). Failures are logged.
    async fn refresh(&self, wait: bool) {
        let asked = Instant::now();
        let _one_at_a_time = self.refreshing.lock().await;
        let last = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            state.last_attempt
        };
        if let Some(last) = last {
            if last >= asked {
                return; // fetched while we waited for the lock
            }
            let allowed = last + self.min_refresh;
            let now = Instant::now();
            if now < allowed {
                if !wait {
                    return;
                }
                tokio::time::sleep(allowed - now).await;
            }
        }
        if let Err(e) = self.fetch().await {
            tracing::warn!(error = %e, "fetching the OIDC issuer's keys failed; keeping the keys held");
        }
    }

    /// Fetches the set now (start-up). Fails when the set cannot be fetched
    /// or holds no usable key.
    pub async fn refresh_now(&self) -> Result<(), OidcError> {
        let _one_at_a_time = self.refreshing.lock().await;
        self.fetch().await
    }

    async fn fetch(&self) -> Result<(), OidcError> {
        let started = Instant::now();
        let result = get_json(&self.http, &self.url).await.and_then(|set| {
            let keys = parse_set(&set);
            if keys.is_empty() {
                Err(OidcError::NoKeys {
                    url: self.url.clone(),
                })
            } else {
                Ok(keys)
            }
        });
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.last_attempt = Some(started);
        let keys = result?;
        tracing::info!(keys = keys.len(), url = %self.url, "fetched the OIDC issuer's keys");
        state.keys = keys;
        state.fetched_at = Some(started);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One of the callers counted in `KeyCache::waiting`, for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts one more caller, unless [`MAX_WAITING`] already wait.
    fn join(count: &'a AtomicUsize) -> Option<Waiting<'a>> {
        if count.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The signing keys of a JWKS document that we can use: RS256 (RSA) and
/// ES256 (EC P-256) with a key id, not marked for encryption. Anything else
/// (Keycloak also publishes an RSA-OAEP encryption key) is skipped, one key at
/// a time, so one key we do not understand does not hide the others.
fn parse_set(set: &serde_json::Value) -> HashMap<String, Arc<Key>> {
    let Some(keys) = set["keys"].as_array() else {
        return HashMap::new();
    };
    keys.iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value.clone()).ok())
        .filter_map(|jwk| {
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                return None;
            }
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => return None,
            };
            let kid = jwk.common.key_id.clone()?;
            let decoding = DecodingKey::from_jwk(&jwk).ok()?;
            Some((
                kid,
                Arc::new(Key {
                    algorithm,
                    decoding,
                }),
            ))
        })
        .collect()
}

/// GETs `url` as JSON; any failure (connection, status, body) names the URL.
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<serde_json::Value, OidcError> {
    let failed = |reason: String| OidcError::Fetch {
        url: url.to_string(),
        reason,
    };
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| failed(without_url(&e)))?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    response.json().await.map_err(|e| failed(without_url(&e)))
}

/// reqwest's message without the URL it appends (ours already names it).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match text.find(" for url (") {
            Some(at) => text[..at].to_string(),
            None => text,
        }
    }
}

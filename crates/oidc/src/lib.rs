//! Bearer tokens issued by an OpenID Connect provider (Keycloak in
//! production): the [`TokenVerifier`] the services and the gateway use when
//! they are told to trust an issuer instead of the built-in key.
//!
//! - **Discovery.** [`OidcVerifier::discover`] reads
//!   `<issuer>/.well-known/openid-configuration`, checks that the document's
//!   `issuer` is exactly the configured one (a typo'd URL or a proxy rewriting
//!   hosts is caught at start-up, not at the first request) and takes its
//!   `jwks_uri`.
//! - **Keys** ([`jwks`]). The published signing keys are cached for
//!   `jwks_cache` (then fetched again on the next request), and a token naming
//!   a key id (`kid`) we do not hold makes us fetch them again, never twice
//!   within `jwks_min_refresh` (such a token waits for the next allowed fetch,
//!   at most that long, rather than being refused; at most [`MAX_WAITING`] at
//!   once, more are refused at once): a flood of tokens with made-up key ids
//!   costs the issuer one request per interval, not one per token, and holds at
//!   most that many requests. That is how
//!   a key rotated in at the issuer is accepted at its first use, and how a key
//!   removed there stops being accepted within `jwks_cache`.
//! - **Signatures.** RS256 and ES256 only. The algorithm is taken from the key
//!   we hold, never from the token alone: a token whose header says another
//!   algorithm than its key's (`alg: none`, HS256 "signed" with the RSA public
//!   key) is refused before any signature is checked.
//! - **Accepted tokens are remembered** until they expire
//!   ([`order_auth::VerifiedTokens`]): the same token again costs a hash and a
//!   look-up instead of a signature check, but its key is still asked for, so
//!   removing a key at the issuer ends its tokens exactly as before.
//! - **Claims.** `iss` equal to the issuer, `aud` containing the audience,
//!   `exp`/`nbf` with a small leeway, `sub` present; roles by the one rule of
//!   [`order_auth::Claims::principal`] (realm roles plus this API's client
//!   roles only).

mod jwks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use jsonwebtoken::{Algorithm, Validation};
use order_auth::{AuthError, Claims, Principal, Remembered, TokenVerifier, VerifiedTokens};
use std::time::Duration;

pub use jwks::{KeyCache, MAX_WAITING};

/// What to trust: one issuer, for one audience.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer URL, exactly as it appears in the tokens' `iss`
    /// (Keycloak: `https://host/realms/<realm>`).
    pub issuer: String,
    /// The audience the tokens must carry in `aud`.
    pub audience: String,
    /// The client whose roles (`resource_access.<client_id>.roles`) count,
    /// besides the realm roles. Usually the audience.
    pub client_id: String,
    /// How long fetched keys are used before they are fetched again.
    pub jwks_cache: Duration,
    /// The shortest time between two fetches caused by unknown key ids.
    pub jwks_min_refresh: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Timeout of each request to the issuer.
    pub http_timeout: Duration,
}

impl OidcConfig {
    /// The defaults for `issuer` and `audience` (client id = audience).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> OidcConfig {
        let audience = audience.into();
        OidcConfig {
            issuer: issuer.into(),
            client_id: audience.clone(),
            audience,
            jwks_cache: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(5),
            leeway: Duration::from_secs(30),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// Failures to reach or understand the issuer (at start-up; afterwards they
/// are logged and the keys already held keep serving).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error(
        "the discovery document at {url} names the issuer {found:?}, not {expected:?}; \
         set the issuer to exactly the `iss` of the tokens"
    )]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("{url} holds no RS256 or ES256 signing key")]
    NoKeys { url: String },
}

/// Verifies tokens of one OIDC issuer. Cheap to share (`Arc`); every method
/// takes `&self`.
pub struct OidcVerifier {
    config: OidcConfig,
    keys: KeyCache,
    /// Tokens accepted earlier ([`order_auth::VerifiedTokens`]): their
    /// signature is not checked again, their key still is.
    verified: VerifiedTokens,
}

impl OidcVerifier {
    /// Reads the issuer's discovery document and fetches its keys once.
    pub async fn discover(config: OidcConfig) -> Result<OidcVerifier, OidcError> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()
            .map_err(|e| OidcError::Fetch {
                url: config.issuer.clone(),
                reason: e.to_string(),
            })?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        );
        let document: serde_json::Value = jwks::get_json(&http, &url).await?;
        let found = document["issuer"].as_str().unwrap_or_default();
        if found != config.issuer {
            return Err(OidcError::IssuerMismatch {
                url,
                expected: config.issuer.clone(),
                found: found.to_string(),
            });
        }
        let Some(jwks_uri) = document["jwks_uri"].as_str() else {
            return Err(OidcError::Fetch {
                url,
                reason: "the document has no jwks_uri".into(),
            });
        };
        let keys = KeyCache::new(
            http,
            jwks_uri.to_string(),
            config.jwks_cache,
            config.jwks_min_refresh,
        );
        keys.refresh_now().await?;
        Ok(OidcVerifier {
            config,
            keys,
            verified: VerifiedTokens::default(),
        })
    }

    /// [`OidcVerifier::discover`], tried again every second until it succeeds
    /// or `patience` has passed (an issuer starting at the same time as us,
    /// as in a compose file or a rolling deploy). The last error is returned.
    pub async fn discover_patiently(
        config: OidcConfig,
        patience: Duration,
    ) -> Result<OidcVerifier, OidcError> {
        let give_up = tokio::time::Instant::now() + patience;
        loop {
            match OidcVerifier::discover(config.clone()).await {
                Ok(verifier) => return Ok(verifier),
                Err(e @ OidcError::IssuerMismatch { .. }) => return Err(e),
                Err(e) if tokio::time::Instant::now() + Duration::from_secs(1) >= give_up => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the OIDC issuer is not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// The configuration it verifies against.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The key cache (to observe fetches in tests and metrics).
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }
}

#[async_trait::async_trait]
impl TokenVerifier for OidcVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = order_auth::unix_now();
        if let Some(known) = self.verified.get(token, now) {
            // Accepted before; trusted only while its key still is (a key the
            // issuer removed stops working as soon as our key set drops it).
            let key = match known.key_id.as_deref() {
                Some(kid) => self.keys.get(kid).await,
                None => None, // never remembered without its key here
            };
            return key.map(|_| known.principal).ok_or(AuthError::UnknownKey);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // An algorithm jsonwebtoken does not even know, such as `none`.
            jsonwebtoken::errors::ErrorKind::Json(_) if token_says_alg(token) => {
                AuthError::WrongAlgorithm
            }
            _ => AuthError::Malformed,
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.keys.get(&kid).await.ok_or(AuthError::UnknownKey)?;
        // The key decides the algorithm: an RSA key verifies RS256 only, so
        // an HS256 token "signed" with the public key never reaches a MAC.
        if key.algorithm != header.alg {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[&self.config.audience]);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| order_auth::classify(e.kind()))?;
        let valid_until = data
            .claims
            .expires_at()
            .saturating_add(self.config.leeway.as_secs() as i64);
        let principal = data.claims.principal(&self.config.client_id);
        let remembered = Remembered {
            principal: principal.clone(),
            key_id: Some(kid),
        };
        self.verified.remember(token, remembered, valid_until, now);
        Ok(principal)
    }
}

/// Whether the token's header is JSON with an `alg` member (used to tell "an
/// algorithm we do not support", such as `none`, from "not a token at all").
fn token_says_alg(token: &str) -> bool {
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|segment| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|header| header.get("alg").is_some())
}

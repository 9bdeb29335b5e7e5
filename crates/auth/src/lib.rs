//! Bearer tokens: who is calling, and what they may do.
//!
//! Tokens are JWTs with Keycloak's shape (`sub`, `realm_access.roles`,
//! `resource_access.<client>.roles`), so the services read the built-in
//! tokens and Keycloak's the same way. In embedded mode the platform signs
//! its own with an ES256 key kept in the data dir ([`LocalSigningKey`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Issuer of the built-in tokens.
pub const LOCAL_ISSUER: &str = "order-platform-local";
/// Audience every token for the API must carry.
pub const API_AUDIENCE: &str = "order-platform-api";
/// File, inside the data dir, holding the built-in signing key (PKCS#8 DER).
pub const KEY_FILE: &str = "signing-key.p8";

/// Roles of DESIGN.md §4.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Ops,
    Analyst,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Customer, Role::Ops, Role::Analyst, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Ops => "ops",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`; for customers, their customer id.
    pub subject: String,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Ops and admins act on any order.
    pub fn may_command_any_order(&self) -> bool {
        self.has(Role::Ops) || self.has(Role::Admin)
    }

    /// Ops, analysts and admins read every order.
    pub fn may_read_any_order(&self) -> bool {
        self.may_command_any_order() || self.has(Role::Analyst)
    }

    /// Whether this caller may issue commands for orders of `customer_id`.
    pub fn may_command_for(&self, customer_id: &str) -> bool {
        self.may_command_any_order() || (self.has(Role::Customer) && self.subject == customer_id)
    }

    /// Whether this caller may read orders of `customer_id`.
    pub fn may_read_for(&self, customer_id: &str) -> bool {
        self.may_read_any_order() || (self.has(Role::Customer) && self.subject == customer_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token was not issued for this API")]
    WrongAudience,
    #[error("the token was issued by an unknown issuer")]
    WrongIssuer,
    #[error("the token must be signed with ES256 or RS256")]
    WrongAlgorithm,
    #[error("the signing key at {path}: {reason}")]
    Key { path: PathBuf, reason: String },
}

/// Checks bearer tokens. Implemented by the built-in key and, in production, by OIDC/JWKS.
pub trait TokenVerifier: Send + Sync + 'static {
    fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    realm_access: Option<RoleList>,
    #[serde(default)]
    resource_access: HashMap<String, RoleList>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RoleList {
    #[serde(default)]
    roles: Vec<String>,
}

impl Claims {
    /// Realm roles plus every client's roles; names we do not know are ignored.
    fn principal(self) -> Principal {
        let roles = self
            .realm_access
            .into_iter()
            .chain(self.resource_access.into_values())
            .flat_map(|list| list.roles)
            .filter_map(|name| Role::parse(&name))
            .collect();
        Principal {
            subject: self.sub,
            roles,
        }
    }
}

/// The built-in ES256 signing key of one data dir.
pub struct LocalSigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
}

impl LocalSigningKey {
    /// Loads the key from `data_dir`, creating the dir and the key on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalSigningKey, AuthError> {
        let path = data_dir.join(KEY_FILE);
        let key_error = |reason: String| AuthError::Key {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| key_error(e.to_string()))?;
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let fresh = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| key_error("cannot generate a key".into()))?;
                write_private(&path, fresh.as_ref()).map_err(|e| key_error(e.to_string()))?;
                // Another process may have won the race to create it: use what is on disk.
                std::fs::read(&path).map_err(|e| key_error(e.to_string()))?
            }
            Err(e) => return Err(key_error(e.to_string())),
        };
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| key_error("not a P-256 PKCS#8 key".into()))?;
        let public = pair.public_key().as_ref();
        let digest = ring::digest::digest(&ring::digest::SHA256, public);
        Ok(LocalSigningKey {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            decoding: DecodingKey::from_ec_der(public),
            key_id: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]),
        })
    }

    /// Signs a token for `subject` with `roles`, valid from `now` for `ttl`.
    pub fn issue(
        &self,
        subject: &str,
        roles: &[Role],
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            iss: LOCAL_ISSUER.into(),
            sub: subject.into(),
            aud: Audience::One(API_AUDIENCE.into()),
            exp: (now + ttl).timestamp(),
            nbf: Some(now.timestamp()),
            iat: Some(now.timestamp()),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            realm_access: Some(RoleList {
                roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
            }),
            resource_access: HashMap::new(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|_| AuthError::Malformed)
    }
}

impl TokenVerifier for LocalSigningKey {
    fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_audience(&[API_AUDIENCE]);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| classify(e.kind()))?;
        Ok(data.claims.principal())
    }
}

fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidSignature => AuthError::BadSignature,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAlgorithm => AuthError::WrongAlgorithm,
        _ => AuthError::Malformed,
    }
}

/// Creates `path` readable by its owner only; never overwrites an existing key.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(bytes)?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("order-auth-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn a_token_round_trips_with_subject_and_roles() {
        let dir = temp_dir();
        let key = LocalSigningKey::load_or_create(&dir).unwrap();
        let token = key
            .issue(
                "alice",
                &[Role::Customer, Role::Analyst],
                Utc::now(),
                Duration::hours(1),
            )
            .unwrap();
        let principal = key.verify(&token).unwrap();
        assert_eq!(principal.subject, "alice");
        assert_eq!(
            principal.roles,
            BTreeSet::from([Role::Customer, Role::Analyst])
        );
    }

    #[test]
    fn the_key_persists_and_another_data_dir_rejects_its_tokens() {
        let dir = temp_dir();
        let token = LocalSigningKey::load_or_create(&dir)
            .unwrap()
            .issue("bob", &[Role::Ops], Utc::now(), Duration::hours(1))
            .unwrap();
        let reloaded = LocalSigningKey::load_or_create(&dir).unwrap();
        assert!(reloaded.verify(&token).is_ok());
        let other = LocalSigningKey::load_or_create(&temp_dir()).unwrap();
        assert!(matches!(other.verify(&token), Err(AuthError::BadSignature)));
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let key = LocalSigningKey::load_or_create(&temp_dir()).unwrap();
        let old = key
            .issue(
                "a",
                &[Role::Ops],
                Utc::now() - Duration::hours(2),
                Duration::hours(1),
            )
            .unwrap();
        assert!(matches!(key.verify(&old), Err(AuthError::Expired)));
        let future = key
            .issue(
                "a",
                &[Role::Ops],
                Utc::now() + Duration::hours(1),
                Duration::hours(1),
            )
            .unwrap();
        assert!(matches!(key.verify(&future), Err(AuthError::NotYetValid)));
    }

    #[test]
    fn tampered_unsigned_and_garbage_tokens_are_refused() {
        let key = LocalSigningKey::load_or_create(&temp_dir()).unwrap();
        let token = key
            .issue("a", &[Role::Customer], Utc::now(), Duration::hours(1))
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": LOCAL_ISSUER, "sub": "a", "aud": API_AUDIENCE,
                "exp": Utc::now().timestamp() + 3600, "realm_access": {"roles": ["admin"]}})
            .to_string(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert!(key.verify(&forged).is_err());
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            forged_claims
        );
        assert!(key.verify(&none_alg).is_err());
        for garbage in ["", "abc", "a.b.c", "...."] {
            assert!(key.verify(garbage).is_err());
        }
    }

    #[test]
    fn roles_come_from_realm_and_client_access_unknown_ones_ignored() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "iss": "x", "sub": "s", "aud": ["a", "b"], "exp": 1,
            "realm_access": {"roles": ["customer", "offline_access"]},
            "resource_access": {"api": {"roles": ["analyst"]}}
        }))
        .unwrap();
        assert_eq!(
            claims.principal().roles,
            BTreeSet::from([Role::Customer, Role::Analyst])
        );
    }

    #[test]
    fn role_rules_follow_the_design() {
        let p = |roles: &[Role]| Principal {
            subject: "alice".into(),
            roles: roles.iter().copied().collect(),
        };
        let customer = p(&[Role::Customer]);
        assert!(customer.may_command_for("alice") && !customer.may_command_for("bob"));
        assert!(customer.may_read_for("alice") && !customer.may_read_for("bob"));
        let analyst = p(&[Role::Analyst]);
        assert!(analyst.may_read_for("bob") && !analyst.may_command_for("alice"));
        assert!(p(&[Role::Ops]).may_command_for("bob"));
        assert!(p(&[Role::Admin]).may_command_for("bob"));
        assert!(!p(&[]).may_read_for("alice"));
    }
}

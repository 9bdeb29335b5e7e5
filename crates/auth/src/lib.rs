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
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

mod verified;
pub use verified::{Remembered, VerifiedTokens, unix_now};

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
    /// The token names a key (`kid`) the issuer does not publish, even after
    /// the published keys were fetched again.
    #[error("the token was signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("the signing key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    /// The data dir has no key: no server has started on it yet.
    #[error("no signing key at {path}")]
    NoKey { path: PathBuf },
}

/// Checks bearer tokens. Implemented by the built-in key ([`LocalSigningKey`])
/// and, in production, by an OIDC issuer's published keys (`order-oidc`).
///
/// Asynchronous because a verifier may have to fetch keys: a token signed with
/// a key that was rotated in since the last fetch must still be accepted.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

/// The claims of a bearer token that the platform reads: the registered ones it
/// validates and Keycloak's role claims. Public so that every verifier reads
/// roles by the one rule of [`Claims::principal`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
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
    /// The token's `exp`, Unix seconds.
    pub fn expires_at(&self) -> i64 {
        self.exp
    }

    /// The caller: `sub`, with the realm's roles plus the roles held on
    /// `client_id` (this API's client) and on no other client (DESIGN.md
    /// §4.5: roles a user holds on other clients of the realm grant nothing
    /// here). Role names we do not know are ignored.
    pub fn principal(mut self, client_id: &str) -> Principal {
        let client_roles = self.resource_access.remove(client_id);
        let roles = self
            .realm_access
            .into_iter()
            .chain(client_roles)
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
///
/// Only the server creates it ([`LocalSigningKey::load_or_create`], called while
/// it holds the data dir's lock); everything else, such as `order-platform
/// token`, only loads it ([`LocalSigningKey::load`]), so a token is always signed
/// with the key of a server that exists.
pub struct LocalSigningKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    verified: VerifiedTokens,
}

/// Clock skew allowed on the built-in tokens' `exp` and `nbf`, in seconds.
const LOCAL_LEEWAY: u64 = 30;

impl LocalSigningKey {
    /// Loads the key of `data_dir`. [`AuthError::NoKey`] when there is none yet.
    pub fn load(data_dir: &Path) -> Result<LocalSigningKey, AuthError> {
        let path = data_dir.join(KEY_FILE);
        match read_key(&path)? {
            Some(pkcs8) => LocalSigningKey::from_pkcs8(&path, &pkcs8),
            None => Err(AuthError::NoKey { path }),
        }
    }

    /// Loads the key of `data_dir`, creating the dir (owner-only) and the key on
    /// first use. Meant for the server, which holds the data dir's lock: two
    /// processes creating the same key at once would each publish their own.
    pub fn load_or_create(data_dir: &Path) -> Result<LocalSigningKey, AuthError> {
        let path = data_dir.join(KEY_FILE);
        let key_error = |reason: String| AuthError::Key {
            path: path.clone(),
            reason,
        };
        create_private_dir(data_dir).map_err(|e| {
            key_error(format!(
                "cannot create the data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        if let Some(pkcs8) = read_key(&path)? {
            return LocalSigningKey::from_pkcs8(&path, &pkcs8);
        }
        let rng = SystemRandom::new();
        let fresh = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| key_error("cannot generate a key".into()))?;
        write_atomically(&path, fresh.as_ref())
            .map_err(|e| key_error(format!("cannot write it: {e}")))?;
        LocalSigningKey::from_pkcs8(&path, fresh.as_ref())
    }

    fn from_pkcs8(path: &Path, pkcs8: &[u8]) -> Result<LocalSigningKey, AuthError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| AuthError::Key {
            path: path.to_path_buf(),
            reason: if pkcs8.is_empty() {
                "the file is empty, left by an interrupted first start; no token can \
                         have been signed with it: remove it and start the server again to \
                         create a new key"
                    .into()
            } else {
                "not a P-256 PKCS#8 key; restore the file from a backup, or remove it \
                         and start the server again to create a new key (tokens signed with \
                         the old key are then refused)"
                    .into()
            },
        })?;
        let public = pair.public_key().as_ref();
        let digest = ring::digest::digest(&ring::digest::SHA256, public);
        Ok(LocalSigningKey {
            encoding: EncodingKey::from_ec_der(pkcs8),
            decoding: DecodingKey::from_ec_der(public),
            key_id: URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]),
            verified: VerifiedTokens::default(),
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

#[async_trait::async_trait]
impl TokenVerifier for LocalSigningKey {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_now(token)
    }
}

impl LocalSigningKey {
    /// [`TokenVerifier::verify`], which never waits for anything here.
    pub fn verify_now(&self, token: &str) -> Result<Principal, AuthError> {
        // One key for the process's life: a token it accepted stays good until it expires.
        let now = unix_now();
        if let Some(known) = self.verified.get(token, now) {
            return Ok(known.principal);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LOCAL_LEEWAY;
        validation.validate_nbf = true;
        validation.set_audience(&[API_AUDIENCE]);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| classify(e.kind()))?;
        let valid_until = data.claims.expires_at().saturating_add(LOCAL_LEEWAY as i64);
        let principal = data.claims.principal(API_AUDIENCE);
        let remembered = Remembered {
            principal: principal.clone(),
            key_id: None,
        };
        self.verified.remember(token, remembered, valid_until, now);
        Ok(principal)
    }
}

/// The error a `jsonwebtoken` failure stands for.
pub fn classify(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
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

/// The key file's bytes, `None` if there is no such file. A key that group or
/// others may read (or replace) is refused: anyone who reads it can sign tokens
/// with every role.
fn read_key(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    let key_error = |reason: String| AuthError::Key {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_error(e.to_string())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| key_error(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(key_error(format!(
                "other users may access it (mode {:03o}); anyone who reads it can sign tokens \
                 with any role. Run `chmod 600 {}` and start again",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| key_error(e.to_string()))?;
    Ok(Some(bytes))
}

/// Creates `dir` and any missing parents, accessible by their owner only. An
/// existing dir is left as it is.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to `path` (owner-only) so that a crash at any point leaves
/// either no file or the whole key, never a truncated one that would stop every
/// later start: a temporary file in the same dir, synced, renamed over `path`,
/// then the dir synced so the rename itself is durable.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    // Left by a crash during an earlier attempt: never trusted, replaced.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests;

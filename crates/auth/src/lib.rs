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
}

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
        Ok(data.claims.principal(API_AUDIENCE))
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
        let principal = key.verify_now(&token).unwrap();
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
        assert!(reloaded.verify_now(&token).is_ok());
        let other = LocalSigningKey::load_or_create(&temp_dir()).unwrap();
        assert!(matches!(
            other.verify_now(&token),
            Err(AuthError::BadSignature)
        ));
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn a_new_key_is_owner_only_in_an_owner_only_dir_with_nothing_left_beside_it() {
        let parent = temp_dir();
        let dir = parent.join("data");
        LocalSigningKey::load_or_create(&dir).unwrap();
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700, "the data dir we create");
        assert_eq!(mode(&parent), 0o700, "and the parents we create");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, [KEY_FILE], "no temporary file is left");
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_other_users_may_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir();
        LocalSigningKey::load_or_create(&dir).unwrap();
        let path = dir.join(KEY_FILE);
        for loose in [0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            for result in [
                LocalSigningKey::load_or_create(&dir),
                LocalSigningKey::load(&dir),
            ] {
                let Err(error) = result else {
                    panic!("mode {loose:o} accepted")
                };
                let message = error.to_string();
                assert!(
                    message.contains(&format!("chmod 600 {}", path.display())),
                    "{message}"
                );
                assert!(message.contains(&format!("{loose:o}")), "{message}");
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        LocalSigningKey::load(&dir).expect("accepted once owner-only");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_or_corrupt_key_file_is_an_error_naming_it_and_the_way_out() {
        for (content, says) in [(&b""[..], "empty"), (&b"not a key"[..], "backup")] {
            let dir = temp_dir();
            LocalSigningKey::load_or_create(&dir).unwrap();
            let path = dir.join(KEY_FILE);
            std::fs::write(&path, content).unwrap();
            for result in [
                LocalSigningKey::load_or_create(&dir),
                LocalSigningKey::load(&dir),
            ] {
                let Err(error) = result else {
                    panic!("{content:?} accepted as a key")
                };
                let message = error.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains(says), "{message}");
                assert!(message.contains("remove it"), "{message}");
            }
            assert_eq!(std::fs::read(&path).unwrap(), content, "left for the user");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn load_never_creates_a_key_or_a_dir() {
        let dir = temp_dir();
        let Err(AuthError::NoKey { path }) = LocalSigningKey::load(&dir) else {
            panic!("a missing data dir has no key")
        };
        assert_eq!(path, dir.join(KEY_FILE));
        assert!(!dir.exists(), "load created {}", dir.display());
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            LocalSigningKey::load(&dir),
            Err(AuthError::NoKey { .. })
        ));
        assert!(!dir.join(KEY_FILE).exists());
        let token = LocalSigningKey::load_or_create(&dir)
            .unwrap()
            .issue("a", &[Role::Ops], Utc::now(), Duration::hours(1))
            .unwrap();
        let loaded = LocalSigningKey::load(&dir).expect("the key the server created");
        assert!(loaded.verify_now(&token).is_ok(), "the same key");
        std::fs::remove_dir_all(&dir).unwrap();
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
        assert!(matches!(key.verify_now(&old), Err(AuthError::Expired)));
        let future = key
            .issue(
                "a",
                &[Role::Ops],
                Utc::now() + Duration::hours(1),
                Duration::hours(1),
            )
            .unwrap();
        assert!(matches!(
            key.verify_now(&future),
            Err(AuthError::NotYetValid)
        ));
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
        assert!(key.verify_now(&forged).is_err());
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            forged_claims
        );
        assert!(key.verify_now(&none_alg).is_err());
        for garbage in ["", "abc", "a.b.c", "...."] {
            assert!(key.verify_now(garbage).is_err());
        }
    }

    #[test]
    fn roles_come_from_realm_and_this_clients_access_unknown_ones_ignored() {
        let claims = || -> Claims {
            serde_json::from_value(serde_json::json!({
                "iss": "x", "sub": "s", "aud": ["a", "b"], "exp": 1,
                "realm_access": {"roles": ["customer", "offline_access"]},
                "resource_access": {"api": {"roles": ["analyst"]},
                                    "other-client": {"roles": ["admin", "ops"]}}
            }))
            .unwrap()
        };
        assert_eq!(
            claims().principal("api").roles,
            BTreeSet::from([Role::Customer, Role::Analyst])
        );
        assert_eq!(
            claims().principal("unrelated").roles,
            BTreeSet::from([Role::Customer]),
            "another client's roles grant nothing"
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

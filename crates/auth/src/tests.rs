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

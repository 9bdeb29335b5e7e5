//! A throw-away Keycloak realm for one test, made through the admin REST API
//! of the Keycloak of `dev/stack` (`KEYCLOAK_URL`, `KEYCLOAK_ADMIN_*`).
//!
//! It is the development realm (`dev/realm/order-platform-realm.json`) under
//! a fresh name, plus what the security tests need and the shared realm must
//! not have: a user whose only role is held on another client, a user with no
//! role, a user with a role on this API's client, a second customer, a client
//! without the audience mapper and one whose tokens live one second. Tests
//! that rotate its signing keys cannot disturb anyone else's tokens.
//! Deleted by [`TestRealm::delete`].

use serde_json::{Value, json};

pub const AUDIENCE: &str = "order-platform-api";
pub const TEST_CLIENT: &str = "order-platform-test";
/// Like the test client, without the audience mapper: its tokens are not for us.
pub const NO_AUDIENCE_CLIENT: &str = "order-platform-noaud";
/// Like the test client, with one-second access tokens.
pub const SHORT_CLIENT: &str = "order-platform-short";
pub const SERVICE_CLIENT: &str = "order-platform-service";
pub const SERVICE_SECRET: &str = "order-platform-service-secret";
pub const PASSWORD: &str = "password";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start Keycloak with `dev/stack up keycloak` and `eval \"$(dev/stack env)\"`")
    })
}

pub struct TestRealm {
    pub name: String,
    pub base: String,
    pub issuer: String,
    http: reqwest::Client,
}

impl TestRealm {
    /// Imports a fresh copy of the development realm with the test additions.
    pub async fn create() -> TestRealm {
        let base = env("KEYCLOAK_URL");
        let name = format!(
            "op-e2e-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let file = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("../../dev/realm/order-platform-realm.json");
        let mut realm: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("read the realm file"))
                .expect("the realm file is JSON");
        realm["realm"] = json!(name);
        realm.as_object_mut().unwrap().remove("id");
        let users = realm["users"].as_array_mut().expect("users");
        for user in users.iter_mut() {
            // User ids are unique across realms: let Keycloak choose new ones.
            user.as_object_mut().unwrap().remove("id");
        }
        let user = |username: &str, realm_roles: Value, client_roles: Value| {
            json!({"username": username, "enabled": true, "email": format!("{username}@example.test"),
                   "emailVerified": true, "firstName": username, "lastName": "Test",
                   "credentials": [{"type": "password", "value": PASSWORD, "temporary": false}],
                   "realmRoles": realm_roles, "clientRoles": client_roles})
        };
        users.push(user("customer2", json!(["customer"]), json!({})));
        users.push(user("noroles", json!([]), json!({})));
        users.push(user(
            "webadmin",
            json!([]),
            json!({"order-platform-web": ["admin", "ops"]}),
        ));
        users.push(user(
            "apianalyst",
            json!([]),
            json!({AUDIENCE: ["analyst"]}),
        ));
        realm["roles"]["client"] = json!({
            "order-platform-web": [{"name": "admin"}, {"name": "ops"}],
            AUDIENCE: [{"name": "analyst"}],
        });
        let clients = realm["clients"].as_array_mut().expect("clients");
        let test_client = clients
            .iter()
            .find(|c| c["clientId"] == TEST_CLIENT)
            .cloned()
            .expect("the test client");
        let mut no_audience = test_client.clone();
        no_audience["clientId"] = json!(NO_AUDIENCE_CLIENT);
        no_audience
            .as_object_mut()
            .unwrap()
            .remove("protocolMappers");
        let mut short = test_client;
        short["clientId"] = json!(SHORT_CLIENT);
        short["attributes"] = json!({"access.token.lifespan": "1"});
        clients.push(no_audience);
        clients.push(short);
        for client in clients.iter_mut() {
            client.as_object_mut().unwrap().remove("id");
        }

        let http = reqwest::Client::new();
        let realm_ref = TestRealm {
            issuer: format!("{base}/realms/{name}"),
            base,
            name,
            http,
        };
        let response = realm_ref
            .admin(reqwest::Method::POST, "")
            .await
            .json(&realm)
            .send()
            .await
            .expect("POST the realm");
        assert!(
            response.status().is_success(),
            "creating the realm: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        realm_ref
    }

    /// A request to `/admin/realms/<name><path>` ("" with POST: create) with
    /// a fresh admin token of the master realm.
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self
            .token_from(
                &format!("{}/realms/master", self.base),
                &[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", &env("KEYCLOAK_ADMIN_USERNAME")),
                    ("password", &env("KEYCLOAK_ADMIN_PASSWORD")),
                ],
            )
            .await;
        let url = if path.is_empty() && method == reqwest::Method::POST {
            format!("{}/admin/realms", self.base)
        } else {
            format!("{}/admin/realms/{}{path}", self.base, self.name)
        };
        self.http.request(method, url).bearer_auth(token)
    }

    async fn token_from(&self, issuer: &str, form: &[(&str, &str)]) -> String {
        let response = self
            .http
            .post(format!("{issuer}/protocol/openid-connect/token"))
            .form(form)
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON token response");
        assert!(
            status.is_success(),
            "token request {form:?}: {status} {body}"
        );
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    /// A password-grant token of `user` through `client`.
    pub async fn password_token_via(&self, client: &str, user: &str) -> String {
        self.token_from(
            &self.issuer,
            &[
                ("grant_type", "password"),
                ("client_id", client),
                ("username", user),
                ("password", PASSWORD),
            ],
        )
        .await
    }

    /// A password-grant token of `user` through the test client.
    pub async fn token(&self, user: &str) -> String {
        self.password_token_via(TEST_CLIENT, user).await
    }

    /// A client-credentials token of the service client (role `ops`).
    pub async fn service_token(&self) -> String {
        self.token_from(
            &self.issuer,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", SERVICE_CLIENT),
                ("client_secret", SERVICE_SECRET),
            ],
        )
        .await
    }

    /// The realm's published keys (JWKS).
    pub async fn jwks(&self) -> Value {
        self.http
            .get(format!("{}/protocol/openid-connect/certs", self.issuer))
            .send()
            .await
            .expect("JWKS")
            .json()
            .await
            .expect("JWKS JSON")
    }

    /// Deletes the realm.
    pub async fn delete(self) {
        let response = self.admin(reqwest::Method::DELETE, "").await.send().await;
        if let Ok(r) = response
            && !r.status().is_success()
        {
            eprintln!("deleting realm {}: {}", self.name, r.status());
        }
    }
}

/// The `sub` of a token (unverified).
pub fn subject(token: &str) -> String {
    order_oidc::testing::payload(token)["sub"]
        .as_str()
        .expect("sub")
        .to_string()
}

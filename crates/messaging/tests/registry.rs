//! The Schema Registry, for real (Apicurio Registry 3 from `dev/stack`, through its
//! Confluent-compatible API): the released schema is registered, the current one is checked
//! against it and accepted, and the breaking changes are refused with a message naming the field.

mod support;

use order_messaging::registry::RegistryError;
use order_messaging::schema::ORDER_EVENT_AVSC;
use order_messaging::{OrderEventSchema, SchemaRegistryClient};
use support::*;

fn client() -> SchemaRegistryClient {
    let url = std::env::var("SCHEMA_REGISTRY_URL").expect(
        "SCHEMA_REGISTRY_URL is not set: start the registry with `dev/stack up schema-registry` \
         and run `eval \"$(dev/stack env)\"` (dev/test does both)",
    );
    SchemaRegistryClient::new(&url).unwrap()
}

/// A throw-away `<topic>-value` subject, FULL_TRANSITIVE like the real one, holding v1.
async fn subject_with_v1(client: &SchemaRegistryClient) -> (String, u32) {
    let subject = order_messaging::registry::value_subject(&format!(
        "order-events-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    client
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .await
        .unwrap();
    let v1 = std::fs::read_to_string(repo_root().join("schemas/avro/released/order-event.v1.avsc"))
        .unwrap();
    let id = client.register(&subject, &v1).await.unwrap();
    (subject, id)
}

#[tokio::test]
async fn the_current_schema_is_compatible_with_the_released_one_and_fetchable_by_id() {
    let client = client();
    let (subject, v1_id) = subject_with_v1(&client).await;

    let report = client
        .check_compatibility(&subject, ORDER_EVENT_AVSC)
        .await
        .unwrap();
    assert!(report.is_compatible, "{report:?}");
    let id = client.register(&subject, ORDER_EVENT_AVSC).await.unwrap();
    // Registering again is idempotent.
    assert_eq!(
        client.register(&subject, ORDER_EVENT_AVSC).await.unwrap(),
        id
    );

    for id in [v1_id, id] {
        let text = client.schema_by_id(id).await.unwrap();
        let fetched = OrderEventSchema::parse(&text).unwrap();
        assert_eq!(
            fetched.schema().canonical_form(),
            OrderEventSchema::current().schema().canonical_form()
        );
    }

    // A compatible evolution is accepted too.
    let evolved = with_optional_field_added();
    assert!(
        client
            .check_compatibility(&subject, &evolved)
            .await
            .unwrap()
            .is_compatible
    );
    client.register(&subject, &evolved).await.unwrap();
    client.delete_subject(&subject).await.unwrap();
}

/// The registry's refusal of `broken`, through both the compatibility API and a registration:
/// (its own findings, the fields at fault).
async fn refused(broken: &str) -> (Vec<String>, Vec<String>) {
    let client = client();
    let (subject, _) = subject_with_v1(&client).await;
    let report = client.check_compatibility(&subject, broken).await.unwrap();
    assert!(
        !report.is_compatible,
        "the registry accepted it: {report:?}"
    );
    let err = client.register(&subject, broken).await.unwrap_err();
    client.delete_subject(&subject).await.unwrap();
    match err {
        RegistryError::Incompatible {
            details, fields, ..
        } => {
            assert_eq!(fields, report.fields, "both calls locate the same fields");
            (details, fields)
        }
        other => panic!("expected a refusal as incompatible, got {other}"),
    }
}

#[tokio::test]
async fn the_registry_refuses_a_removed_field_and_the_refusal_names_it() {
    let (details, fields) = refused(&with_field_removed()).await;
    // The registry itself locates it at the union branch: payload<OrderShipped>.
    assert!(
        details
            .iter()
            .any(|d| d.contains("OrderEvent.payload<OrderShipped>")),
        "{details:#?}"
    );
    assert_eq!(
        fields,
        [
            "OrderEvent.payload<OrderShipped>.carrier (forward): field `carrier` is read but not \
          written, and has no default [against version 1, FULL_TRANSITIVE]"
        ],
    );
}

#[tokio::test]
async fn the_registry_refuses_a_changed_type_and_the_refusal_names_the_field() {
    let (details, fields) = refused(&with_type_changed()).await;
    assert!(
        details
            .iter()
            .any(|d| d.contains("OrderEvent.payload<OrderCreated>")),
        "{details:#?}"
    );
    assert_eq!(fields.len(), 2, "{fields:#?}");
    for (field, direction) in fields.iter().zip(["backward", "forward"]) {
        assert!(
            field.starts_with(&format!(
                "OrderEvent.payload<OrderCreated>.lines[].unitPriceMinor ({direction}): type changed"
            )),
            "{field}"
        );
    }
}

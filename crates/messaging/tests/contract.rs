//! The Avro contract offline: every event type survives encode → Confluent frame → decode
//! exactly, money included, and the bytes are what a stock Avro reader expects.

mod support;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use chrono::{DateTime, Utc};
use order_domain::{Currency, EventPayload, Line};
use order_event_store::RecordedEvent;
use order_messaging::schema::{ORDER_EVENT_AVSC, PAYLOAD_TYPES};
use order_messaging::wire::{frame, unframe};
use order_messaging::{
    MessagingError, OrderEventDecoder, OrderEventEncoder, OrderEventMessage, OrderEventSchema,
};
use proptest::prelude::*;
use support::*;
use uuid::Uuid;

const SCHEMA_ID: u32 = 0x0102_0304;

fn codec() -> (OrderEventEncoder, OrderEventDecoder) {
    let schema = OrderEventSchema::current().clone();
    let encoder = OrderEventEncoder::new(schema.clone(), SCHEMA_ID);
    let mut decoder = OrderEventDecoder::new(schema);
    decoder
        .add_writer_schema(SCHEMA_ID, ORDER_EVENT_AVSC)
        .unwrap();
    (encoder, decoder)
}

#[test]
fn every_event_type_round_trips_exactly() {
    let (encoder, decoder) = codec();
    let messages = sample_messages();
    let mut seen: Vec<&str> = messages.iter().map(|m| m.payload.event_type()).collect();
    seen.sort();
    seen.dedup();
    let mut all = PAYLOAD_TYPES.to_vec();
    all.sort();
    assert_eq!(seen, all, "the samples cover every event type");
    for message in &messages {
        let bytes = encoder.encode_message(message).unwrap();
        assert_eq!(decoder.decode(&bytes).unwrap(), *message);
    }
}

#[test]
fn the_frame_is_magic_byte_then_big_endian_schema_id() {
    let (encoder, _) = codec();
    let bytes = encoder.encode_message(&sample_messages()[0]).unwrap();
    assert_eq!(&bytes[..5], &[0, 1, 2, 3, 4]);
    let (id, body) = unframe(&bytes).unwrap();
    assert_eq!((id, body.len()), (SCHEMA_ID, bytes.len() - 5));
    assert_eq!(frame(id, body), bytes);
}

#[test]
fn the_body_is_plain_avro_binary_that_a_generic_reader_decodes() {
    // No vendor serializer: the writer schema alone decodes the body, and money is a long.
    let (encoder, _) = codec();
    let message = &sample_messages()[0]; // USD OrderCreated with 12.34 and i64::MAX
    let bytes = encoder.encode_message(message).unwrap();
    let schema = Schema::parse_str(ORDER_EVENT_AVSC).unwrap();
    let mut body = &bytes[5..];
    let value = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut body)
        .unwrap();
    assert!(body.is_empty());
    let Value::Record(fields) = value else {
        panic!("not a record")
    };
    let payload = &fields.iter().find(|(n, _)| n == "payload").unwrap().1;
    let Value::Union(0, created) = payload else {
        panic!("payload is not OrderCreated: {payload:?}")
    };
    let Value::Record(created) = created.as_ref() else {
        panic!()
    };
    let get = |name: &str| &created.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(get("currency"), &Value::String("USD".into()));
    let Value::Array(lines) = get("lines") else {
        panic!()
    };
    let prices: Vec<&Value> = lines
        .iter()
        .map(|l| match l {
            Value::Record(f) => &f.iter().find(|(n, _)| n == "unitPriceMinor").unwrap().1,
            _ => panic!(),
        })
        .collect();
    assert_eq!(prices, [&Value::Long(1234), &Value::Long(i64::MAX)]);
}

#[test]
fn a_stored_event_is_published_with_its_envelope() {
    let order_id = Uuid::now_v7();
    let payload = EventPayload::ItemAdded {
        line: line("KWD-9", 4, 1_001),
        currency: currency("KWD"),
    };
    let causation = Uuid::new_v4();
    let recorded = RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: order_id,
        version: 7,
        global_position: 4242,
        event_type: payload.event_type().into(),
        schema_version: EventPayload::SCHEMA_VERSION,
        data: payload.data(),
        // Nanoseconds: the contract keeps microseconds.
        occurred_at: DateTime::<Utc>::from_timestamp(1_764_000_000, 123_456_789).unwrap(),
        actor: "ops1".into(),
        correlation_id: "req-abc".into(),
        causation_id: causation,
        traceparent: None,
        idempotency_key: None,
    };
    let (encoder, decoder) = codec();
    let decoded = decoder.decode(&encoder.encode(&recorded).unwrap()).unwrap();
    assert_eq!(
        decoded,
        OrderEventMessage {
            event_id: recorded.event_id,
            order_id,
            version: 7,
            global_position: 4242,
            occurred_at: DateTime::<Utc>::from_timestamp(1_764_000_000, 123_456_000).unwrap(),
            actor: "ops1".into(),
            correlation_id: "req-abc".into(),
            causation_id: causation.to_string(),
            payload,
        }
    );
}

#[test]
fn a_stored_event_the_domain_cannot_read_is_refused() {
    let recorded = RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: Uuid::now_v7(),
        version: 1,
        global_position: 1,
        event_type: "ItemAdded".into(),
        schema_version: 1,
        data: serde_json::json!({"line": {"sku": "x"}, "currency": "USD"}),
        occurred_at: Utc::now(),
        actor: "a".into(),
        correlation_id: "c".into(),
        causation_id: Uuid::new_v4(),
        traceparent: None,
        idempotency_key: None,
    };
    let (encoder, _) = codec();
    let err = encoder.encode(&recorded).unwrap_err();
    assert!(matches!(err, MessagingError::Stored { .. }), "{err}");
}

#[test]
fn malformed_frames_are_refused() {
    let (encoder, decoder) = codec();
    let good = encoder.encode_message(&sample_messages()[1]).unwrap();
    assert!(matches!(
        decoder.decode(&good[..3]),
        Err(MessagingError::Frame(_))
    ));
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    assert!(matches!(
        decoder.decode(&bad_magic),
        Err(MessagingError::Frame(_))
    ));
    let mut unknown = good.clone();
    unknown[4] = 9;
    assert!(matches!(
        decoder.decode(&unknown),
        Err(MessagingError::UnknownSchemaId(0x0102_0309))
    ));
    let mut padded = good.clone();
    padded.push(0);
    assert!(matches!(
        decoder.decode(&padded),
        Err(MessagingError::Frame(_))
    ));
    assert!(decoder.decode(&good[..good.len() - 1]).is_err());
}

#[test]
fn data_written_with_the_released_schema_decodes_with_the_current_one() {
    let released =
        std::fs::read_to_string(repo_root().join("schemas/avro/released/order-event.v1.avsc"))
            .unwrap();
    let old = OrderEventSchema::parse(&released).unwrap();
    let encoder = OrderEventEncoder::new(old, 1);
    let mut decoder = OrderEventDecoder::new(OrderEventSchema::current().clone());
    decoder.add_writer_schema(1, &released).unwrap();
    for message in sample_messages() {
        let bytes = encoder.encode_message(&message).unwrap();
        assert_eq!(decoder.decode(&bytes).unwrap(), message);
    }
}

#[test]
fn a_reader_resolves_by_branch_name_not_position() {
    // Writer with the payload union reversed: the decoder must still pick the right types.
    let mut reordered = current_json();
    let payload = reordered["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "payload")
        .unwrap();
    let branches = payload["type"].as_array_mut().unwrap();
    // OrderLine is defined inside OrderCreated, so OrderCreated must stay before ItemAdded.
    let created = branches.remove(0);
    branches.reverse();
    branches.push(created);
    let added = branches
        .iter()
        .position(|b| b["name"] == "ItemAdded")
        .unwrap();
    let line_record = branches.last().unwrap()["fields"][3]["type"]["items"].clone();
    branches[added]["fields"][0]["type"] = line_record;
    branches.last_mut().unwrap()["fields"][3]["type"]["items"] = "OrderLine".into();
    let text = reordered.to_string();
    let encoder = OrderEventEncoder::new(OrderEventSchema::parse(&text).unwrap(), 5);
    let mut decoder = OrderEventDecoder::new(OrderEventSchema::current().clone());
    decoder.add_writer_schema(5, &text).unwrap();
    for message in sample_messages() {
        let bytes = encoder.encode_message(&message).unwrap();
        assert_eq!(decoder.decode(&bytes).unwrap(), message);
    }
}

fn arb_currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec!["USD", "JPY", "KWD", "EUR", "BHD", "CLP"]).prop_map(currency)
}

fn arb_line() -> impl Strategy<Value = Line> {
    (
        "[A-Z0-9-]{1,64}",
        "\\PC{1,40}",
        1u32..=10_000,
        1i64..=i64::MAX,
    )
        .prop_map(|(sku, product_name, quantity, unit_price)| Line {
            sku,
            product_name,
            quantity,
            unit_price,
        })
}

fn arb_payload() -> impl Strategy<Value = EventPayload> {
    let text = "\\PC{0,60}";
    prop_oneof![
        (
            any::<u128>(),
            text,
            arb_currency(),
            prop::collection::vec(arb_line(), 1..5)
        )
            .prop_map(|(id, customer_id, currency, lines)| {
                EventPayload::OrderCreated {
                    order_id: Uuid::from_u128(id),
                    customer_id,
                    currency,
                    lines,
                }
            }),
        (arb_line(), arb_currency())
            .prop_map(|(line, currency)| EventPayload::ItemAdded { line, currency }),
        text.prop_map(|sku| EventPayload::ItemRemoved { sku }),
        prop::option::of(text).prop_map(|reason| EventPayload::OrderApproved { reason }),
        text.prop_map(|reason| EventPayload::OrderRejected { reason }),
        (text, text).prop_map(|(tracking_number, carrier)| EventPayload::OrderShipped {
            tracking_number,
            carrier
        }),
        prop::option::of(text).prop_map(|reason| EventPayload::OrderCanceled { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_event_round_trips_exactly(
        payload in arb_payload(),
        event_id in any::<u128>(),
        order_id in any::<u128>(),
        version in 1u64..=i64::MAX as u64,
        global_position in any::<i64>(),
        // Years 1 to 9999 in microseconds.
        micros in -62_135_596_800_000_000i64..253_402_300_799_000_000,
        actor in "\\PC{0,40}",
        correlation_id in "\\PC{0,40}",
    ) {
        let message = OrderEventMessage {
            event_id: Uuid::from_u128(event_id),
            order_id: Uuid::from_u128(order_id),
            version,
            global_position,
            occurred_at: DateTime::<Utc>::from_timestamp_micros(micros).unwrap(),
            actor,
            correlation_id,
            causation_id: Uuid::from_u128(event_id ^ order_id).to_string(),
            payload,
        };
        let (encoder, decoder) = codec();
        let bytes = encoder.encode_message(&message).unwrap();
        prop_assert_eq!(decoder.decode(&bytes).unwrap(), message);
    }
}

#[test]
fn an_evolved_schema_reads_current_data_and_the_current_schema_reads_evolved_data() {
    // The compatible evolution of tests/compatibility.rs: OrderShipped gains an optional
    // `trackingUrl`. Old data read with the new schema gets the default; new data (with a
    // URL) read with the old schema drops it. Either way every event keeps its type and data.
    let evolved_text = with_optional_field_added();
    let evolved = OrderEventSchema::parse(&evolved_text).unwrap();

    // Current writer, evolved reader.
    let encoder = OrderEventEncoder::new(OrderEventSchema::current().clone(), 7);
    let mut decoder = OrderEventDecoder::new(evolved.clone());
    decoder.add_writer_schema(7, ORDER_EVENT_AVSC).unwrap();
    for message in sample_messages() {
        let bytes = encoder.encode_message(&message).unwrap();
        assert_eq!(decoder.decode(&bytes).unwrap(), message);
    }

    // Evolved writer (values built by hand: this build's code knows no trackingUrl), current
    // reader.
    let (_, decoder) = codec();
    let mut decoder = decoder;
    decoder.add_writer_schema(8, &evolved_text).unwrap();
    for message in sample_messages() {
        let mut value = message.to_avro(&evolved).unwrap();
        if let Value::Record(fields) = &mut value
            && let Some((_, Value::Union(_, payload))) = fields.last_mut()
            && let EventPayload::OrderShipped { .. } = message.payload
            && let Value::Record(shipped) = payload.as_mut()
        {
            shipped.push((
                "trackingUrl".into(),
                Value::Union(1, Box::new(Value::String("https://example.com/t/1".into()))),
            ));
        }
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(evolved.schema())
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        assert_eq!(decoder.decode(&frame(8, &body)).unwrap(), message);
    }
}

#[test]
fn a_decoded_message_reads_back_as_the_stored_event_it_came_from() {
    let payload = EventPayload::ItemAdded {
        line: line("JPY-1", 3, 1_200),
        currency: currency("JPY"),
    };
    let recorded = RecordedEvent {
        event_id: Uuid::now_v7(),
        stream_id: Uuid::now_v7(),
        version: 4,
        global_position: 99,
        event_type: payload.event_type().into(),
        schema_version: EventPayload::SCHEMA_VERSION,
        data: payload.data(),
        occurred_at: DateTime::<Utc>::from_timestamp(1_764_000_000, 5_000).unwrap(),
        actor: "ops1".into(),
        correlation_id: "req-1".into(),
        causation_id: Uuid::new_v4(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        idempotency_key: None,
    };
    let (encoder, decoder) = codec();
    let decoded = decoder.decode(&encoder.encode(&recorded).unwrap()).unwrap();
    let back = decoded.to_recorded(recorded.traceparent.clone()).unwrap();
    assert_eq!(back, recorded);
    assert_eq!(back.decode().unwrap().payload, payload);
}

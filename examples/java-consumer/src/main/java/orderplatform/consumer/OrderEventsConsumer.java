package orderplatform.consumer;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Reads the order-events topic with only the stock Kafka client and Apache Avro, and prints
 * every event as one JSON line on stdout.
 *
 * <p>Each record value is in the Confluent wire format: byte 0 is the magic byte 0, bytes 1-4
 * the writer schema's registry id (big endian), the rest one Avro binary datum. The writer
 * schema is fetched once per id from the registry's Confluent-compatible API
 * ({@code GET {registry}/schemas/ids/{id}}) and the datum is resolved from it to this
 * program's reader schema (the repository's {@code schemas/avro/order-event.avsc}, bundled in
 * the jar), so events written with older or newer compatible schemas read the same way.
 *
 * <p>Money stays exact: amounts are Avro longs of minor units and are printed as JSON integers,
 * never through a floating-point type.
 *
 * <p>Output line: {@code {"topic":..,"partition":..,"offset":..,"key":..,"schemaId":..,
 * "eventType":"ItemAdded","event":{...the OrderEvent record...}}}. Diagnostics go to stderr.
 *
 * <p>Exit status: 0 when {@code --max-events} events were printed (or, without it, when the
 * timeout passed), 2 when the timeout passed before {@code --max-events}, 1 on bad arguments
 * or an undecodable record (the offset is named; nothing after it is committed).
 */
public final class OrderEventsConsumer {

    private static final String USAGE = String.join("\n",
            "usage: java -jar order-events-consumer.jar [options]",
            "  --bootstrap-servers HOSTS  Kafka brokers (env KAFKA_BOOTSTRAP_SERVERS)",
            "  --registry-url URL         Confluent-compatible registry API, e.g.",
            "                             http://127.0.0.1:58081/apis/ccompat/v7 (env SCHEMA_REGISTRY_URL)",
            "  --topic NAME               topic to read (env ORDER_EVENTS_TOPIC, default order-events)",
            "  --group-id ID              consumer group (env ORDER_EVENTS_GROUP_ID, default order-events-java-consumer)",
            "  --max-events N             stop after N events (default: no limit)",
            "  --timeout SECONDS          stop after this long (default: run until killed)",
            "  --reader-schema FILE       reader schema (default: the bundled order-event.avsc)");

    public static void main(String[] args) {
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("order-events-consumer: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(1);
            return;
        }
        try {
            System.exit(new OrderEventsConsumer(options).run(System.out));
        } catch (Exception e) {
            System.err.println("order-events-consumer: " + e.getMessage());
            System.exit(1);
        }
    }

    /** Command-line options, each with an environment fallback. */
    record Options(String bootstrapServers, String registryUrl, String topic, String groupId,
                   long maxEvents, Duration timeout, Path readerSchema) {

        static Options parse(String[] args) {
            Map<String, String> given = new HashMap<>();
            for (int i = 0; i < args.length; i++) {
                String arg = args[i];
                if (arg.equals("--help") || arg.equals("-h")) {
                    System.out.println(USAGE);
                    System.exit(0);
                }
                if (!arg.startsWith("--")) {
                    throw new IllegalArgumentException("unexpected argument " + arg);
                }
                String name = arg.substring(2);
                String value;
                int eq = name.indexOf('=');
                if (eq >= 0) {
                    value = name.substring(eq + 1);
                    name = name.substring(0, eq);
                } else if (i + 1 < args.length) {
                    value = args[++i];
                } else {
                    throw new IllegalArgumentException(arg + " needs a value");
                }
                if (!List.of("bootstrap-servers", "registry-url", "topic", "group-id", "max-events",
                        "timeout", "reader-schema").contains(name)) {
                    throw new IllegalArgumentException("unknown option --" + name);
                }
                given.put(name, value);
            }
            String bootstrap = option(given, "bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", null);
            String registry = option(given, "registry-url", "SCHEMA_REGISTRY_URL", null);
            if (bootstrap == null) {
                throw new IllegalArgumentException("--bootstrap-servers (or KAFKA_BOOTSTRAP_SERVERS) is required");
            }
            if (registry == null) {
                throw new IllegalArgumentException("--registry-url (or SCHEMA_REGISTRY_URL) is required");
            }
            long maxEvents = parseLong(given.getOrDefault("max-events", "-1"), "--max-events");
            long timeout = parseLong(given.getOrDefault("timeout", "-1"), "--timeout");
            String schema = given.get("reader-schema");
            return new Options(bootstrap, registry.replaceAll("/+$", ""),
                    option(given, "topic", "ORDER_EVENTS_TOPIC", "order-events"),
                    option(given, "group-id", "ORDER_EVENTS_GROUP_ID", "order-events-java-consumer"),
                    maxEvents, timeout < 0 ? null : Duration.ofSeconds(timeout),
                    schema == null ? null : Path.of(schema));
        }

        private static String option(Map<String, String> given, String name, String env, String fallback) {
            String value = given.get(name);
            if (value == null || value.isEmpty()) {
                value = System.getenv(env);
            }
            return value == null || value.isEmpty() ? fallback : value;
        }

        private static long parseLong(String text, String option) {
            try {
                return Long.parseLong(text);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException(option + " must be a whole number, got " + text);
            }
        }
    }

    private final Options options;
    /** The schema events are resolved to: the repository's order-event.avsc. */
    private final Schema readerSchema;
    /** One datum reader per writer schema id; filled from the registry on first sight of an id. */
    private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private BinaryDecoder decoder;

    OrderEventsConsumer(Options options) throws IOException {
        this.options = options;
        this.readerSchema = loadReaderSchema(options.readerSchema());
    }

    private static Schema loadReaderSchema(Path path) throws IOException {
        if (path != null) {
            return new Schema.Parser().parse(Files.readString(path));
        }
        try (InputStream in = OrderEventsConsumer.class.getResourceAsStream("/order-event.avsc")) {
            if (in == null) {
                throw new IOException("order-event.avsc is not bundled in the jar; rebuild with mvn package");
            }
            return new Schema.Parser().parse(in);
        }
    }

    int run(PrintStream out) throws Exception {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrapServers());
        props.put(ConsumerConfig.GROUP_ID_CONFIG, options.groupId());
        // Only events of committed relay transactions (DESIGN.md §6: exactly once in the topic).
        props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // A reader never creates the topic (a typo would otherwise create an empty one).
        props.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        // Offsets are committed after the events were printed: at-least-once for this reader.
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        Instant deadline = options.timeout() == null ? null : Instant.now().plus(options.timeout());
        long printed = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(options.topic()));
            while (options.maxEvents() < 0 || printed < options.maxEvents()) {
                Duration wait = Duration.ofMillis(500);
                if (deadline != null) {
                    Duration left = Duration.between(Instant.now(), deadline);
                    if (left.isNegative() || left.isZero()) {
                        break;
                    }
                    wait = left.compareTo(wait) < 0 ? left : wait;
                }
                ConsumerRecords<byte[], byte[]> records = consumer.poll(wait);
                for (ConsumerRecord<byte[], byte[]> record : records) {
                    out.println(toJsonLine(record));
                    printed++;
                }
                out.flush();
                if (!records.isEmpty()) {
                    consumer.commitSync();
                }
            }
        }
        if (options.maxEvents() >= 0 && printed < options.maxEvents()) {
            System.err.printf("order-events-consumer: timed out after %d s with %d of %d events%n",
                    options.timeout().toSeconds(), printed, options.maxEvents());
            return 2;
        }
        return 0;
    }

    private String toJsonLine(ConsumerRecord<byte[], byte[]> record) throws IOException, InterruptedException {
        String where = record.topic() + "-" + record.partition() + "@" + record.offset();
        byte[] value = record.value();
        if (value == null || value.length < 5) {
            throw new IOException(where + ": value is shorter than the 5-byte header");
        }
        ByteBuffer header = ByteBuffer.wrap(value, 0, 5);
        byte magic = header.get();
        if (magic != 0) {
            throw new IOException(where + ": magic byte is " + magic + ", expected 0");
        }
        int schemaId = header.getInt();
        GenericDatumReader<GenericRecord> reader = readers.get(schemaId);
        if (reader == null) {
            reader = new GenericDatumReader<>(fetchWriterSchema(schemaId), readerSchema);
            readers.put(schemaId, reader);
        }
        decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
        GenericRecord event;
        try {
            event = reader.read(null, decoder);
        } catch (IOException | RuntimeException e) {
            // E.g. an event type this reader schema does not know yet (written with a newer
            // schema): name the record, stop before committing past it.
            throw new IOException(where + " (writer schema " + schemaId + "): cannot decode: " + e, e);
        }
        if (!decoder.isEnd()) {
            throw new IOException(where + ": bytes left after the Avro datum");
        }
        String eventType = ((GenericRecord) event.get("payload")).getSchema().getName();
        String key = record.key() == null ? null : new String(record.key(), StandardCharsets.UTF_8);
        // GenericData renders a record as JSON, longs as integers (no floating point).
        return "{\"topic\":" + jsonString(record.topic())
                + ",\"partition\":" + record.partition()
                + ",\"offset\":" + record.offset()
                + ",\"key\":" + (key == null ? "null" : jsonString(key))
                + ",\"schemaId\":" + schemaId
                + ",\"eventType\":" + jsonString(eventType)
                + ",\"event\":" + GenericData.get().toString(event) + "}";
    }

    /** The writer schema of {@code id}, from the registry's Confluent-compatible API. */
    private Schema fetchWriterSchema(int id) throws IOException, InterruptedException {
        URI uri = URI.create(options.registryUrl() + "/schemas/ids/" + Integer.toUnsignedString(id));
        HttpRequest request = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10))
                .header("Accept", "application/vnd.schemaregistry.v1+json").GET().build();
        HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
            throw new IOException("GET " + uri + " answered " + response.statusCode() + ": " + response.body());
        }
        String schema = Json.stringField(response.body(), "schema");
        if (schema == null) {
            throw new IOException("GET " + uri + " has no \"schema\" string: " + response.body());
        }
        System.err.println("order-events-consumer: fetched writer schema " + id + " from " + uri);
        return new Schema.Parser().parse(schema);
    }

    private static String jsonString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /**
     * Just enough JSON to read the registry's {@code {"schema": "..."}} answer: the value of one
     * top-level string field. (The two allowed libraries bring no public JSON parser.)
     */
    static final class Json {
        private final String text;
        private int pos;

        private Json(String text) {
            this.text = text;
        }

        static String stringField(String json, String field) throws IOException {
            Json p = new Json(json);
            p.skipSpace();
            p.expect('{');
            p.skipSpace();
            if (p.peek() == '}') {
                return null;
            }
            while (true) {
                p.skipSpace();
                String name = p.string();
                p.skipSpace();
                p.expect(':');
                p.skipSpace();
                if (name.equals(field)) {
                    return p.peek() == '"' ? p.string() : null;
                }
                p.skipValue();
                p.skipSpace();
                if (p.peek() == ',') {
                    p.pos++;
                } else {
                    return null;
                }
            }
        }

        private char peek() throws IOException {
            if (pos >= text.length()) {
                throw new IOException("truncated JSON from the registry");
            }
            return text.charAt(pos);
        }

        private void expect(char c) throws IOException {
            if (peek() != c) {
                throw new IOException("unexpected JSON from the registry at " + pos + ": " + text);
            }
            pos++;
        }

        private void skipSpace() {
            while (pos < text.length() && Character.isWhitespace(text.charAt(pos))) {
                pos++;
            }
        }

        private String string() throws IOException {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = peek();
                pos++;
                if (c == '"') {
                    return b.toString();
                }
                if (c != '\\') {
                    b.append(c);
                    continue;
                }
                char e = peek();
                pos++;
                switch (e) {
                    case '"', '\\', '/' -> b.append(e);
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'n' -> b.append('\n');
                    case 'r' -> b.append('\r');
                    case 't' -> b.append('\t');
                    case 'u' -> {
                        if (pos + 4 > text.length()) {
                            throw new IOException("truncated \\u escape from the registry");
                        }
                        b.append((char) Integer.parseInt(text.substring(pos, pos + 4), 16));
                        pos += 4;
                    }
                    default -> throw new IOException("bad escape \\" + e + " from the registry");
                }
            }
        }

        /** Skips any JSON value (strings, numbers, literals, nested objects and arrays). */
        private void skipValue() throws IOException {
            char c = peek();
            if (c == '"') {
                string();
            } else if (c == '{' || c == '[') {
                int depth = 0;
                do {
                    char d = peek();
                    if (d == '"') {
                        string();
                        continue;
                    }
                    if (d == '{' || d == '[') {
                        depth++;
                    } else if (d == '}' || d == ']') {
                        depth--;
                    }
                    pos++;
                } while (depth > 0);
            } else {
                while (pos < text.length() && ",}] \n\r\t".indexOf(text.charAt(pos)) < 0) {
                    pos++;
                }
            }
        }
    }
}

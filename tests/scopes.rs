//! Tenant isolation in embedded mode. The table of every RPC × role × tenant
//! (`tests/common/scopes.rs`; `tests/kafka.rs` runs it in Kafka mode), and a property
//! test: whatever calls tokens of tenant A make, in whatever order, no answer holds a
//! byte of tenant B's alert (its id, its people, its evidence, its tenant) that the call
//! did not itself send, and B's alert and pair are left as they were.

mod common;

use common::scopes::{self, authed, bytes_of, people, subscribed, token, Seeded, A, B, ROLES};
use pairwatch::config::Config;
use pairwatch::proto::pb;
use pairwatch::server::start;
use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestRunner};
use prost::Message;
use std::time::Duration;
use tonic::transport::Channel;

fn config(name: &str) -> Config {
    let dir = std::env::temp_dir().join(format!("pw-scopes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.shards.count = 2;
    scopes::configure(&mut c.auth);
    // The conversations are dated in the past: no deadline passes during the test.
    c.engine.deadline_clock = "1h".into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_by_every_role_keeps_to_the_tokens_tenants() {
    let server = start(config("table"), Default::default()).await.unwrap();
    let ch = common::channel(server.grpc_addr).await;
    let seeded = scopes::seed(&ch, Duration::from_secs(10)).await;
    scopes::run_table(ch, server.http_addr, &seeded).await;
    server.stop().await.unwrap();
}

/// Tenants a call may name: none (the default tenant), A, B, one that does not exist.
const TENANTS: [&str; 4] = ["", A, B, "tenant-c"];

/// One call by a tenant-A token of role `ROLES[role]`.
#[derive(Clone, Debug)]
enum Call {
    Publish {
        role: usize,
        tenant: usize,
        batch: bool,
    },
    Subscribe {
        role: usize,
        tenant: usize,
        from_beginning: bool,
        after: u64,
    },
    ListOpen {
        role: usize,
        tenant: usize,
        priority: usize,
        claimed: i32,
        limit: u32,
    },
    Claim {
        role: usize,
        alert: usize,
        release: bool,
    },
    Resolve {
        role: usize,
        alert: usize,
        decision: i32,
    },
    GetPair {
        role: usize,
        tenant: usize,
        pair: usize,
    },
    ForgetUser {
        role: usize,
        tenant: usize,
        user: usize,
    },
}

fn call() -> impl Strategy<Value = Call> {
    let role = 0..ROLES.len();
    let tenant = 0..TENANTS.len();
    prop_oneof![
        (role.clone(), tenant.clone(), any::<bool>()).prop_map(|(role, tenant, batch)| {
            Call::Publish {
                role,
                tenant,
                batch,
            }
        }),
        (role.clone(), tenant.clone(), any::<bool>(), 0..8u64).prop_map(
            |(role, tenant, from_beginning, after)| Call::Subscribe {
                role,
                tenant,
                from_beginning,
                after
            }
        ),
        (role.clone(), tenant.clone(), 0..5usize, 0..3i32, 0..3u32).prop_map(
            |(role, tenant, priority, claimed, limit)| Call::ListOpen {
                role,
                tenant,
                priority,
                claimed,
                limit
            }
        ),
        (role.clone(), 0..3usize, any::<bool>()).prop_map(|(role, alert, release)| Call::Claim {
            role,
            alert,
            release
        }),
        (role.clone(), 0..3usize, 1..4i32).prop_map(|(role, alert, decision)| Call::Resolve {
            role,
            alert,
            decision
        }),
        (role.clone(), tenant.clone(), 0..3usize).prop_map(|(role, tenant, pair)| Call::GetPair {
            role,
            tenant,
            pair
        }),
        (role, tenant, 0..5usize).prop_map(|(role, tenant, user)| Call::ForgetUser {
            role,
            tenant,
            user
        }),
    ]
}

/// The people a call may name: A's, B's, and someone who never wrote.
fn user(i: usize) -> String {
    let (sa, ta, _) = people(A);
    let (sb, tb, _) = people(B);
    [sa, ta, sb, tb, "scope-nobody".into()][i].clone()
}

/// Makes `c` with the tenant-A token of its role: the bytes sent, the bytes answered.
async fn make(ch: &Channel, seeded: &Seeded, n: usize, c: &Call) -> (Vec<u8>, Vec<u8>) {
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let alert_id = |i: usize| {
        [
            seeded.a.alert_id.clone(),
            seeded.b.alert_id.clone(),
            "no-such-alert".into(),
        ][i]
            .clone()
    };
    match *c {
        Call::Publish {
            role,
            tenant,
            batch,
        } => {
            let ev = common::desk::event(
                TENANTS[tenant],
                &format!("prop-e{n}"),
                "2026-03-01T21:00:00Z",
                ("prop-u1", "ADULT"),
                ("prop-u2", "AGE_13_15"),
                "tu joues ce soir ?",
            );
            let t = token(ROLES[role], "a");
            let sent = ev.encode_to_vec();
            if batch {
                let req = pb::PublishBatchRequest { events: vec![ev] };
                (sent, bytes_of(&ingest.publish_batch(authed(req, &t)).await))
            } else {
                let r = ingest
                    .publish(authed(tokio_stream::iter(vec![ev]), &t))
                    .await;
                let got = match r {
                    Ok(r) => {
                        use tokio_stream::StreamExt;
                        let acks: Vec<_> = r.into_inner().collect().await;
                        acks.iter()
                            .flat_map(|a| match a {
                                Ok(a) => a.encode_to_vec(),
                                Err(s) => s.message().as_bytes().to_vec(),
                            })
                            .collect()
                    }
                    Err(s) => s.message().as_bytes().to_vec(),
                };
                (sent, got)
            }
        }
        Call::Subscribe {
            role,
            tenant,
            from_beginning,
            after,
        } => {
            let req = pb::SubscribeRequest {
                tenant: TENANTS[tenant].into(),
                from_beginning,
                after_cursor: after,
                min_priority: String::new(),
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            let got = match subscribed(ch, &t, req, Duration::from_millis(150)).await {
                Ok(seen) => seen.iter().flat_map(|e| e.encode_to_vec()).collect(),
                Err(s) => s.message().as_bytes().to_vec(),
            };
            (sent, got)
        }
        Call::ListOpen {
            role,
            tenant,
            priority,
            claimed,
            limit,
        } => {
            let req = pb::ListOpenRequest {
                tenant: TENANTS[tenant].into(),
                min_priority: ["", "P0", "P1", "P2", "P3"][priority].into(),
                claimed,
                limit,
                ..Default::default()
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            (sent, bytes_of(&alerts.list_open(authed(req, &t)).await))
        }
        Call::Claim {
            role,
            alert,
            release,
        } => {
            let req = pb::ClaimRequest {
                alert_id: alert_id(alert),
                moderator_id: "prop-mod".into(),
                release,
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            (sent, bytes_of(&alerts.claim(authed(req, &t)).await))
        }
        Call::Resolve {
            role,
            alert,
            decision,
        } => {
            let req = pb::ResolveRequest {
                alert_id: alert_id(alert),
                moderator_id: "prop-mod".into(),
                decision,
                reason_code: String::new(),
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            (sent, bytes_of(&alerts.resolve(authed(req, &t)).await))
        }
        Call::GetPair { role, tenant, pair } => {
            let (a, b) = [(0, 1), (2, 3), (0, 3)][pair];
            let req = pb::GetPairRequest {
                tenant: TENANTS[tenant].into(),
                user_a: user(a),
                user_b: user(b),
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            (sent, bytes_of(&admin.get_pair(authed(req, &t)).await))
        }
        Call::ForgetUser {
            role,
            tenant,
            user: u,
        } => {
            let req = pb::ForgetUserRequest {
                tenant: TENANTS[tenant].into(),
                user_id: user(u),
            };
            let sent = req.encode_to_vec();
            let t = token(ROLES[role], "a");
            (sent, bytes_of(&admin.forget_user(authed(req, &t)).await))
        }
    }
}

fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// B's alert as an every-tenant admin sees it: open, its claim, and B's pair.
async fn b_state(ch: &Channel) -> (Vec<pb::AlertEnvelope>, Vec<u8>) {
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let t = token("admin", "all");
    let open = alerts
        .list_open(authed(
            pb::ListOpenRequest {
                tenant: B.into(),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner()
        .alerts;
    let (suspect, teen, _) = people(B);
    let pair = admin
        .get_pair(authed(
            pb::GetPairRequest {
                tenant: B.into(),
                user_a: suspect,
                user_b: teen,
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner()
        .encode_to_vec();
    (open, pair)
}

#[test]
fn no_sequence_of_tenant_a_calls_shows_anything_of_tenant_b() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, ch, seeded) = rt.block_on(async {
        let server = start(config("property"), Default::default()).await.unwrap();
        let ch = common::channel(server.grpc_addr).await;
        let seeded = scopes::seed(&ch, Duration::from_secs(10)).await;
        (server, ch, seeded)
    });
    let before = rt.block_on(b_state(&ch));
    assert_eq!(before.0.len(), 1);
    let markers = seeded.b_markers();
    let mut runner = TestRunner::new(Cases {
        cases: 48,
        failure_persistence: None,
        ..Cases::default()
    });
    let n = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&prop::collection::vec(call(), 1..8), |calls| {
            for c in &calls {
                let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (sent, got) = rt.block_on(make(&ch, &seeded, n, c));
                for m in &markers {
                    prop_assert!(
                        holds(&sent, m) || !holds(&got, m),
                        "{c:?} answered B's {m:?}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let after = rt.block_on(b_state(&ch));
    assert_eq!(after, before, "tenant A's calls changed nothing of B's");
    rt.block_on(server.stop()).unwrap();
}

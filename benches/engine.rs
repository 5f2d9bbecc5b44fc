//! Criterion benchmarks of the detection engine's stages, on the synthetic workload
//! (`pairwatch::workload`), with the embedded rule pack. Run: `cargo bench`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pairwatch::detect::deadline::find_deadline;
use pairwatch::detect::engine::{Engine, EngineConfig};
use pairwatch::detect::event::Event;
use pairwatch::detect::lexicon::Hits;
use pairwatch::detect::normalize::{normalize, Normalized};
use pairwatch::detect::pack::RulePack;
use pairwatch::workload::{Shape, Workload};
use std::hint::black_box;
use std::sync::Arc;

const N: usize = 20_000;

fn events() -> Vec<Event> {
    Workload::new(Shape::default()).take(N)
}

fn stages(c: &mut Criterion) {
    let pack = Arc::new(RulePack::embedded().expect("embedded pack"));
    let evs = events();
    let texts: Vec<&str> = evs.iter().map(Event::text).collect();
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(N as u64));

    let mut norm = Normalized::new();
    g.bench_function("normalize", |b| {
        b.iter(|| {
            for t in &texts {
                normalize(t, &mut norm);
                black_box(norm.as_bytes());
            }
        })
    });

    let normalized: Vec<Normalized> = texts
        .iter()
        .map(|t| {
            let mut n = Normalized::new();
            normalize(t, &mut n);
            n
        })
        .collect();
    let mut hits = Hits::default();
    g.bench_function("lexicon_scan", |b| {
        b.iter(|| {
            for n in &normalized {
                pack.lexicon.scan(n, &mut hits);
                black_box(hits.signals);
            }
        })
    });
    g.bench_function("bare_automaton_scan", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(pack.lexicon.count_raw(t));
            }
        })
    });
    let tz = jiff::tz::TimeZone::UTC;
    g.bench_function("deadline", |b| {
        b.iter(|| {
            for (n, e) in normalized.iter().zip(&evs) {
                black_box(find_deadline(n.as_str(), e.sent_at, &tz));
            }
        })
    });
    g.bench_function("engine_process", |b| {
        b.iter_batched(
            || Engine::new(pack.clone(), EngineConfig::default()),
            |mut engine| {
                let mut out = Vec::new();
                for e in &evs {
                    engine.process(e, &mut out);
                    out.clear();
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
    let mut g = c.benchmark_group("bytes");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("normalize", |b| {
        b.iter(|| {
            for t in &texts {
                normalize(t, &mut norm);
            }
        })
    });
    g.finish();
}

/// State update with a million distinct pairs already tracked.
fn million_pairs(c: &mut Criterion) {
    let pack = Arc::new(RulePack::embedded().expect("embedded pack"));
    let mut engine = Engine::new(pack, EngineConfig::default());
    let mut out = Vec::new();
    let mut w = Workload::new(Shape {
        pairs: 1_000_000,
        escalating: 0.0,
        ..Shape::default()
    });
    for e in w.take(2_500_000) {
        engine.process(&e, &mut out);
    }
    let next = w.take(N);
    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("process_with_1m_pairs", |b| {
        b.iter(|| {
            for e in &next {
                engine.process(e, &mut out);
                out.clear();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, stages, million_pairs);
criterion_main!(benches);

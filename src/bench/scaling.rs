//! `pairwatch bench scaling`: how the engine's cost grows with the number of pairs it
//! holds, the length of the messages and the number of languages in the lexicon. Each
//! sweep moves one of the three and holds the others at the base of [`Plan`]; every
//! point is the engine on one thread over freshly generated events.

use crate::bench::proc_stats;
use crate::detect::engine::{Engine, EngineConfig};
use crate::detect::pack::RulePack;
use crate::workload::{Shape, Workload};
use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;

/// The languages of the embedded pack, in the order the lexicon sweep adds them.
pub const LANGUAGES: [&str; 6] = ["en", "fr", "es", "de", "it", "pt"];

/// What to sweep.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Pairs held (every one of them seen once before the timed events).
    pub pairs: Vec<usize>,
    /// Bytes per benign message.
    pub lengths: Vec<usize>,
    /// Languages in the lexicon (the first N of [`LANGUAGES`]).
    pub languages: Vec<usize>,
    /// Timed events per point (fewer for long messages: at most 100 MB of text).
    pub events: usize,
    /// Pairs held while the length and lexicon sweeps run.
    pub base_pairs: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            pairs: vec![1_000, 10_000, 100_000, 1_000_000, 10_000_000],
            lengths: vec![10, 30, 100, 300, 1_000, 2_000],
            languages: (1..=LANGUAGES.len()).collect(),
            events: 500_000,
            base_pairs: 100_000,
        }
    }
}

/// One measured point.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub x: f64,
    pub events_per_s: f64,
    /// The sweep's second figure: bytes per pair, MB of text per second, or the
    /// milliseconds to build the pack.
    pub extra: f64,
}

/// One sweep: which parameter moved, and its points.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub parameter: &'static str,
    pub extra: &'static str,
    /// The parameter spans orders of magnitude.
    pub log_x: bool,
    pub points: Vec<Point>,
}

#[derive(Clone, Debug)]
pub struct ScalingReport {
    pub pairs: Sweep,
    pub lengths: Sweep,
    pub languages: Sweep,
}

impl ScalingReport {
    pub fn sweeps(&self) -> [&Sweep; 3] {
        [&self.pairs, &self.lengths, &self.languages]
    }

    /// The report as a table, one row per point.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<22} {:>12} {:>14} {:>12} {}\n",
            "sweep", "value", "events/s", "figure", "unit"
        );
        for sweep in self.sweeps() {
            for p in &sweep.points {
                out += &format!(
                    "{:<22} {:>12} {:>14.0} {:>12.1} {}\n",
                    sweep.parameter, p.x, p.events_per_s, p.extra, sweep.extra
                );
            }
        }
        out
    }
}

/// Runs the three sweeps; `progress` is told each point as it starts.
pub fn run_scaling(plan: &Plan, progress: impl Fn(&str)) -> anyhow::Result<ScalingReport> {
    let full = Arc::new(RulePack::embedded().context("the embedded rule pack")?);
    let mut pairs = sweep("pairs held", "bytes/pair (resident)", true);
    for &n in &plan.pairs {
        progress(&format!("{n} pairs"));
        let shape = Shape {
            pairs: n,
            ..Shape::default()
        };
        let (events_per_s, bytes_per_pair) = timed(&full, shape, plan.events);
        pairs.points.push(Point {
            x: n as f64,
            events_per_s,
            extra: bytes_per_pair,
        });
    }
    let mut lengths = sweep("message bytes", "MB of text/s", true);
    for &len in &plan.lengths {
        progress(&format!("messages of {len} bytes"));
        let shape = Shape {
            pairs: plan.base_pairs,
            text_bytes: Some(len),
            ..Shape::default()
        };
        let events = plan.events.min(100_000_000 / len).max(1);
        let (events_per_s, _) = timed(&full, shape, events);
        lengths.points.push(Point {
            x: len as f64,
            events_per_s,
            extra: events_per_s * len as f64 / 1e6,
        });
    }
    let mut languages = sweep("languages", "ms to build the pack", false);
    for &k in &plan.languages {
        let langs = &LANGUAGES[..k.clamp(1, LANGUAGES.len())];
        progress(&format!("lexicon of {}", langs.join("+")));
        let t = Instant::now();
        let pack = RulePack::embedded_languages(langs)
            .with_context(|| format!("the embedded pack with {}", langs.join(", ")))?;
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let shape = Shape {
            pairs: plan.base_pairs,
            ..Shape::default()
        };
        let (events_per_s, _) = timed(&Arc::new(pack), shape, plan.events);
        languages.points.push(Point {
            x: langs.len() as f64,
            events_per_s,
            extra: build_ms,
        });
    }
    Ok(ScalingReport {
        pairs,
        lengths,
        languages,
    })
}

fn sweep(parameter: &'static str, extra: &'static str, log_x: bool) -> Sweep {
    Sweep {
        parameter,
        extra,
        log_x,
        points: Vec::new(),
    }
}

/// Every pair of `shape` seen once, then `events` generated events timed through a
/// fresh engine: events per second, and resident bytes per pair after the first pass.
fn timed(pack: &Arc<RulePack>, shape: Shape, events: usize) -> (f64, f64) {
    let pairs = shape.pairs;
    let mut workload = Workload::new(shape);
    let mut engine = Engine::new(pack.clone(), EngineConfig::default());
    let mut out = Vec::new();
    release_free_memory();
    let before = proc_stats("self").rss_bytes;
    for pair in 0..pairs {
        engine.process(&workload.event_of(pair), &mut out);
        out.clear();
    }
    let held = proc_stats("self").rss_bytes.saturating_sub(before);
    let stream = workload.take(events);
    let t = Instant::now();
    for ev in &stream {
        engine.process(ev, &mut out);
        out.clear();
    }
    let seconds = t.elapsed().as_secs_f64().max(1e-9);
    (events as f64 / seconds, held as f64 / pairs.max(1) as f64)
}

/// Hands the heap's free pages back to the system, so that the resident memory a point
/// adds is not hidden by what the previous point freed.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sweep_measures_its_points_and_the_chart_is_a_png() {
        let plan = Plan {
            pairs: vec![100, 2_000],
            lengths: vec![10, 500],
            languages: vec![1, 2],
            events: 3_000,
            base_pairs: 500,
        };
        let report = run_scaling(&plan, |_| {}).unwrap();
        let xs = |s: &Sweep| s.points.iter().map(|p| p.x).collect::<Vec<_>>();
        assert_eq!(xs(&report.pairs), [100.0, 2_000.0]);
        assert_eq!(xs(&report.lengths), [10.0, 500.0]);
        assert_eq!(xs(&report.languages), [1.0, 2.0]);
        for s in report.sweeps() {
            assert!(s.points.iter().all(|p| p.events_per_s > 0.0), "{s:?}");
        }
        // Text throughput follows message length; building a pack takes time.
        let mb = &report.lengths.points;
        assert!(mb[1].extra > mb[0].extra, "{mb:?}");
        assert!(report.languages.points.iter().all(|p| p.extra > 0.0));
        assert_eq!(report.table().lines().count(), 1 + 6);

        let dir = std::env::temp_dir().join(format!("pairwatch-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scaling.png");
        crate::bench::chart::draw(&report, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((width, height), (1500, 900));
        // Axes, curves and labels: far more than a blank page compresses to.
        assert!(png.len() > 20_000, "{} bytes", png.len());
    }
}

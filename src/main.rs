//! The `pairwatch` command line: wires the library's pieces to files and streams.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pairwatch::detect::engine::{Engine, EngineConfig};
use pairwatch::detect::event::Limits;
use pairwatch::detect::pack::RulePack;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "pairwatch",
    version,
    about = "Real-time detection of grooming and sextortion escalation between pairs of chat users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct EngineArgs {
    /// Rule pack directory (lexicon/, escalation.toml, notices/); default: the pack built into the binary.
    #[arg(long, value_name = "DIR")]
    rules: Option<PathBuf>,
    /// Time zone for clock-time deadlines ("avant 20h"), IANA name.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    time_zone: String,
    /// Per-tenant time zone, TENANT=ZONE; may be repeated.
    #[arg(long = "tenant-time-zone", value_name = "TENANT=ZONE")]
    tenant_time_zones: Vec<String>,
    /// Pairs idle for longer than this (event time) are forgotten: 30d, 12h...
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pair_ttl: String,
}

#[derive(Subcommand)]
enum Command {
    /// The service: gRPC ingest and alerts, durable state, metrics. With no config it runs
    /// the embedded default (gRPC 127.0.0.1:50051, HTTP 127.0.0.1:9464, state in ./data).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// `desk`: serve the moderators' desk alone, without detection (Kafka mode);
        /// sets `desk.role`.
        #[arg(long, value_parser = ["all", "desk"])]
        role: Option<String>,
    },
    /// Stream a JSONL file of events (or - for stdin) to a running service.
    Publish {
        #[command(flatten)]
        target: ClientArgs,
        /// Longer lines are reported with their number and skipped, not read into memory.
        #[arg(long, value_name = "BYTES", default_value_t = pairwatch::replay::MAX_LINE_BYTES)]
        max_line_bytes: usize,
        #[arg(default_value = "-")]
        input: String,
    },
    /// Print a running service's alerts as JSON lines, as they are raised.
    Subscribe {
        #[command(flatten)]
        target: ClientArgs,
        /// Only alerts at this priority or more urgent (P0..P3).
        #[arg(long, default_value = "P3")]
        min_priority: String,
        /// Only this tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Resume after this cursor (0: only new alerts).
        #[arg(long, default_value_t = 0)]
        after_cursor: u64,
        /// Print the whole alert log first, then follow.
        #[arg(long)]
        from_beginning: bool,
    },
    /// Claim an alert for a moderator (an exclusive lease, renewed by claiming again), or
    /// give the claim up.
    Claim {
        #[command(flatten)]
        target: ClientArgs,
        #[arg(long)]
        alert: String,
        #[arg(long)]
        moderator: String,
        /// Give the claim up instead.
        #[arg(long)]
        release: bool,
    },
    /// Resolve an alert: confirmed, false_positive (no re-alert for the pair and pattern
    /// unless the priority rises) or escalated (handed to law enforcement or a hotline).
    Resolve {
        #[command(flatten)]
        target: ClientArgs,
        #[arg(long)]
        alert: String,
        #[arg(long)]
        moderator: String,
        #[arg(long, value_parser = ["confirmed", "false_positive", "escalated"])]
        decision: String,
        /// A short code for why (letters, digits, '_', '-'), kept in the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The load generator: the synthetic workload through the engine, a running service,
    /// or memory.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Events JSONL in (FILE or - for stdin), alerts JSONL out on stdout, summary on stderr.
    Replay {
        #[command(flatten)]
        engine: EngineArgs,
        /// Stop at the first bad line instead of reporting and skipping it.
        #[arg(long)]
        strict: bool,
        /// Longer lines are bad lines (reported with their number), not read into memory.
        #[arg(long, value_name = "BYTES", default_value_t = pairwatch::replay::MAX_LINE_BYTES)]
        max_line_bytes: usize,
        /// Reject events whose `sent_at` is further ahead of this machine's clock than
        /// DURATION (`sent_at_in_future`), as the service does; default: off, pure event time.
        #[arg(long, value_name = "DURATION")]
        max_future_skew: Option<String>,
        #[arg(default_value = "-")]
        input: String,
    },
    /// Backtest the rules on labelled history: recall, false alarms, time to alert.
    Eval {
        #[command(flatten)]
        engine: EngineArgs,
        /// Events of a labelled set. Repeat it with --labels to evaluate several sets (each
        /// named by its file name without .events.jsonl), matched in the order given.
        #[arg(long, value_name = "FILE", required = true)]
        events: Vec<PathBuf>,
        /// Labels of the set whose --events is at the same position.
        #[arg(long, value_name = "FILE", required = true)]
        labels: Vec<PathBuf>,
        /// Also run the rule pack in DIR (the candidate) on the same events and report
        /// what changes against the current pack (--rules, or the embedded one). The gates
        /// then judge the candidate.
        #[arg(long, value_name = "DIR")]
        compare: Option<PathBuf>,
        /// Output: text tables, or one JSON document on stdout.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Priority threshold for the gates below and for the pairs gained and lost under
        /// --compare: alerts at this priority or higher count.
        #[arg(long, value_name = "P", default_value = "P2")]
        threshold: String,
        /// Exit with an error when recall on the positives is below this fraction.
        #[arg(long, value_name = "FRACTION")]
        min_recall: Option<f64>,
        /// Exit with an error when the share of negatives with an alert is above this fraction.
        #[arg(long, value_name = "FRACTION")]
        max_false_alarm_rate: Option<f64>,
        /// Exit with an error when the median number of messages to the first alert at
        /// the threshold on positives is above this.
        #[arg(long, value_name = "MESSAGES")]
        max_median_messages: Option<u32>,
    },
    /// Rule pack commands.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The service's gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// Bearer token (or the PAIRWATCH_TOKEN environment variable).
    #[arg(long, env = "PAIRWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct WorkloadArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Distinct pairs the events fall on.
    #[arg(long, default_value_t = 100_000)]
    pairs: usize,
    /// Share of pairs following an escalation script.
    #[arg(long, default_value_t = 0.005)]
    escalating: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl WorkloadArgs {
    fn shape(&self) -> pairwatch::workload::Shape {
        pairwatch::workload::Shape {
            seed: self.seed,
            pairs: self.pairs,
            escalating: self.escalating,
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The engine in process, on one core, with a bare automaton scan of the same texts.
    Engine {
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// Resident bytes per tracked pair, idle and active.
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        pairs: usize,
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
    },
    /// A running `pairwatch serve` over gRPC: batched publishing, event-to-alert latency.
    Grpc {
        #[command(flatten)]
        target: ClientArgs,
        #[command(flatten)]
        workload: WorkloadArgs,
        /// Events per PublishBatch call.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Concurrent calls.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Events per second to hold (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// PID of the server, to report its CPU and memory.
        #[arg(long)]
        server_pid: Option<String>,
    },
    /// How the engine's cost grows with pairs held (10^3 to 10^7), message length (10 to
    /// 2,000 bytes) and lexicon size (1 to 6 languages): a table, and a PNG chart.
    Scaling {
        /// Where to write the chart.
        #[arg(long, value_name = "FILE", default_value = "scaling.png")]
        chart: PathBuf,
        /// Largest number of pairs held (the sweep goes up by powers of ten; the other
        /// sweeps hold 100,000 pairs, or this if fewer).
        #[arg(long, default_value_t = 10_000_000)]
        max_pairs: usize,
        /// Timed events per point.
        #[arg(long, default_value_t = 500_000)]
        events: usize,
    },
    /// The Kafka path against a broker: produce, a bare consumer, then the service.
    Kafka {
        /// Bootstrap servers of a broker that allows topic creation.
        #[arg(long)]
        brokers: String,
        #[command(flatten)]
        workload: WorkloadArgs,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// librdkafka property for every client, KEY=VALUE (repeatable).
        #[arg(long = "client", value_name = "KEY=VALUE")]
        client: Vec<String>,
        /// Record format of the events: json or protobuf.
        #[arg(long, default_value = "json", value_parser = ["json", "protobuf"])]
        format: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, environment), secrets masked.
    Show {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate a rule pack and report every error with its file and line.
    Check {
        #[arg(default_value = "rules")]
        dir: PathBuf,
    },
    /// Show how a text is normalised, which signals it matches and which slots it holds
    /// (`SIGNAL=SLOT+SLOT` when slots compose it), for rule authors.
    Match {
        /// Rule pack directory; default: the pack built into the binary.
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// A text classifier's label on the texts, NAME=SCORE (repeatable): shows the
        /// lexicon category the pack reads from it (`SIGNAL=label`).
        #[arg(long = "label", value_name = "NAME=SCORE")]
        labels: Vec<String>,
        /// A label of an attached image, NAME=SCORE (repeatable): shows whether the pack
        /// reads it as nude media.
        #[arg(long = "image-label", value_name = "NAME=SCORE")]
        image_labels: Vec<String>,
        /// The attached image matched this hash list.
        #[arg(long, value_name = "LIST")]
        hash_match: Option<String>,
        /// Texts to match; one line each from stdin when none is given (and no image).
        texts: Vec<String>,
    },
}

/// Parses NAME=SCORE labels of `rules match`.
fn parse_labels(args: &[String]) -> Result<Vec<pairwatch::detect::event::Label>> {
    args.iter()
        .map(|a| {
            let (name, score) = a
                .rsplit_once('=')
                .with_context(|| format!("label {a:?} is not NAME=SCORE"))?;
            let score: f32 = score
                .parse()
                .with_context(|| format!("label {a:?}: bad score"))?;
            Ok(pairwatch::detect::event::Label {
                name: name.to_string(),
                score,
            })
        })
        .collect()
}

/// What the pack reads from an image with these labels and hash match, for `rules match`:
/// the evidence tag and the signals.
fn match_image(
    pack: &RulePack,
    labels: Vec<pairwatch::detect::event::Label>,
    hash_match: Option<String>,
) -> String {
    use pairwatch::detect::event::{Attachment, AttachmentKind, HashMatch};
    let image = [Attachment {
        kind: AttachmentKind::Image,
        labels,
        hash_match: hash_match.map(|list| HashMatch {
            list: Some(list),
            matched: true,
        }),
    }];
    let media = pack.rules.classifiers.read_media(&image, false);
    let signals: Vec<&str> = media.signals.iter().map(|s| s.as_str()).collect();
    format!(
        "{}\t[{}]",
        media.classified.or(media.plain).unwrap_or_default(),
        signals.join(" ")
    )
}

fn load_pack(dir: Option<&Path>) -> Result<RulePack> {
    match dir {
        Some(d) => pairwatch::pack_dir::load(d)
            .map_err(|e| anyhow::anyhow!("invalid rule pack {}:\n{e}", d.display())),
        None => {
            RulePack::embedded().map_err(|e| anyhow::anyhow!("invalid embedded rule pack:\n{e}"))
        }
    }
}

fn engine(args: &EngineArgs) -> Result<Engine> {
    let pack = load_pack(args.rules.as_deref())?;
    let zone = |name: &str| {
        jiff::tz::TimeZone::get(name).with_context(|| format!("unknown time zone {name:?}"))
    };
    let mut config = EngineConfig {
        default_time_zone: zone(&args.time_zone)?,
        ..EngineConfig::default()
    };
    for spec in &args.tenant_time_zones {
        let Some((tenant, name)) = spec.split_once('=') else {
            bail!("--tenant-time-zone takes TENANT=ZONE, not {spec:?}")
        };
        config
            .tenant_time_zones
            .insert(tenant.to_string(), zone(name)?);
    }
    config.pair_ttl = pairwatch::detect::time::parse_duration(&args.pair_ttl)
        .with_context(|| format!("bad --pair-ttl {:?}", args.pair_ttl))?;
    Ok(Engine::new(Arc::new(pack), config))
}

fn open(input: &str) -> Result<Box<dyn BufRead>> {
    Ok(if input == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?,
        ))
    })
}

fn load_config(file: Option<&Path>) -> Result<pairwatch::config::Config> {
    Ok(pairwatch::config::Config::load(file, std::env::vars())?)
}

async fn serve(config: pairwatch::config::Config) -> Result<()> {
    pairwatch::server::init_logging(&config);
    // Signals are watched before anything starts, so a SIGTERM during start-up still
    // stops the service cleanly.
    let token = tokio_util::sync::CancellationToken::new();
    let on_signal = token.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutdown requested");
        on_signal.cancel();
    });
    pairwatch::server::start(config, token).await?.wait().await
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { config, role } => {
            let role = role.map(|r| (format!("{}DESK__ROLE", pairwatch::config::ENV_PREFIX), r));
            let config =
                pairwatch::config::Config::load(config.as_deref(), std::env::vars().chain(role))?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(config))?;
        }
        Command::Publish {
            target,
            max_line_bytes,
            input,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let input: Box<dyn BufRead + Send> = if input == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::new(
                    std::fs::File::open(&input).with_context(|| format!("cannot open {input}"))?,
                ))
            };
            let done = rt.block_on(async {
                let ch = pairwatch::client::connect(&target.addr).await?;
                pairwatch::client::publish(ch, target.token.as_deref(), input, max_line_bytes).await
            })?;
            eprintln!(
                "publish: {} accepted, {} rejected",
                done.accepted, done.rejected
            );
            if done.rejected > 0 {
                std::process::exit(2);
            }
        }
        Command::Subscribe {
            target,
            min_priority,
            tenant,
            after_cursor,
            from_beginning,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let ch = pairwatch::client::connect(&target.addr).await?;
                let req = pairwatch::proto::pb::SubscribeRequest {
                    min_priority,
                    tenant,
                    after_cursor,
                    from_beginning,
                };
                pairwatch::client::subscribe(
                    ch,
                    target.token.as_deref(),
                    req,
                    std::io::stdout().lock(),
                )
                .await
            })?;
        }
        Command::Claim {
            target,
            alert,
            moderator,
            release,
        } => {
            let req = pairwatch::proto::pb::ClaimRequest {
                alert_id: alert,
                moderator_id: moderator,
                release,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let line = rt.block_on(async {
                let ch = pairwatch::client::connect(&target.addr).await?;
                pairwatch::client::claim(ch, target.token.as_deref(), req).await
            })?;
            println!("{line}");
        }
        Command::Resolve {
            target,
            alert,
            moderator,
            decision,
            reason,
        } => {
            let decision = match decision.as_str() {
                "confirmed" => pairwatch::proto::pb::Decision::Confirmed,
                "false_positive" => pairwatch::proto::pb::Decision::FalsePositive,
                _ => pairwatch::proto::pb::Decision::Escalated,
            };
            let req = pairwatch::proto::pb::ResolveRequest {
                alert_id: alert,
                moderator_id: moderator,
                decision: decision as i32,
                reason_code: reason,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let ch = pairwatch::client::connect(&target.addr).await?;
                pairwatch::client::resolve(ch, target.token.as_deref(), req).await
            })?;
            println!("resolved");
        }
        Command::Bench { command } => bench(command)?,
        Command::Config {
            command: ConfigCommand::Show { config },
        } => print!("{}", load_config(config.as_deref())?.show()),
        Command::Replay {
            engine: args,
            strict,
            max_future_skew,
            max_line_bytes,
            input,
        } => {
            let limits = Limits {
                max_future_skew: max_future_skew
                    .map(|s| {
                        pairwatch::detect::time::parse_duration(&s)
                            .filter(|d| *d >= 0)
                            .with_context(|| format!("bad --max-future-skew {s:?} (e.g. 10m)"))
                    })
                    .transpose()?,
                ..Limits::default()
            };
            let mut engine = engine(&args)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = pairwatch::replay::replay(
                open(&input)?,
                &mut engine,
                &limits,
                strict,
                max_line_bytes,
                |a| pairwatch::replay::write_alert(&mut out, a),
                |line, e| eprintln!("line {line}: rejected: {e}"),
            )?;
            out.flush()?;
            eprintln!("{summary}");
        }
        Command::Eval {
            engine: args,
            events,
            labels,
            compare,
            format,
            threshold,
            min_recall,
            max_false_alarm_rate,
            max_median_messages,
        } => {
            use pairwatch::eval;
            let threshold = pairwatch::detect::rules::Priority::parse(&threshold)
                .with_context(|| format!("bad --threshold {threshold:?} (P0 to P3)"))?;
            let sets = eval::pair_sets(&events, &labels).map_err(anyhow::Error::msg)?;
            // The candidate runs with the same engine settings: only the rules differ.
            let candidate = compare.map(|dir| EngineArgs {
                rules: Some(dir),
                ..args.clone()
            });
            let mut results = Vec::new();
            for set in &sets {
                // Fresh engines per set: a history's pairs and clocks must not leak into
                // the next one.
                let mut engines = vec![engine(&args)?];
                engines.extend(candidate.as_ref().map(engine).transpose()?);
                results.push(eval_set(set, &mut engines, threshold)?);
            }
            match format.as_str() {
                "json" => println!("{}", eval::render_json(&results, threshold)),
                _ => print!("{}", eval::render_text(&results)),
            }
            let gates = eval::Gates {
                threshold,
                min_recall,
                max_false_alarm_rate,
                max_median_messages,
            };
            let failures = eval::gate_failures(&results, &gates);
            if !failures.is_empty() {
                bail!("{}", failures.join("\n"));
            }
        }
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => match pairwatch::pack_dir::load(&dir) {
            Ok(pack) => {
                println!(
                    "{}: ok: {} languages ({}), {} phrases, {} rules, {} caps, version {}",
                    dir.display(),
                    pack.lexicon.languages().len(),
                    pack.lexicon.languages().join(", "),
                    pack.lexicon.phrase_count(),
                    pack.rules.rules.len(),
                    pack.rules.caps.len(),
                    pack.version
                );
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                bail!("{} error(s) in {}", errors.0.len(), dir.display());
            }
        },
        Command::Rules {
            command:
                RulesCommand::Match {
                    rules,
                    labels,
                    image_labels,
                    hash_match,
                    texts,
                },
        } => {
            let pack = load_pack(rules.as_deref())?;
            let labels = parse_labels(&labels)?;
            let image = !image_labels.is_empty() || hash_match.is_some();
            if image {
                println!(
                    "{}",
                    match_image(&pack, parse_labels(&image_labels)?, hash_match)
                );
            }
            let texts = if texts.is_empty() && !image {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                texts
            };
            let mut norm = pairwatch::detect::normalize::Normalized::new();
            let mut hits = pairwatch::detect::lexicon::Hits::default();
            let mut composed = pairwatch::detect::grammar::Composed::default();
            let slot_names = |s: pairwatch::detect::grammar::SlotSet| {
                s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join("+")
            };
            for text in texts {
                pairwatch::detect::normalize::normalize(&text, &mut norm);
                pack.lexicon.scan(&norm, &mut hits);
                // Each text alone, as a message that starts a run.
                let empty = pairwatch::detect::grammar::SlotSet::EMPTY;
                pack.grammar
                    .compose(empty, hits.slots, hits.slots, &mut composed);
                let mut signals: Vec<String> = hits
                    .signals
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect();
                for (signal, slots) in &composed.via {
                    if !hits.signals.contains(*signal) {
                        signals.push(format!("{}={}", signal.as_str(), slot_names(*slots)));
                    }
                }
                let (labelled, _) = pack.rules.classifiers.text_signals(&labels);
                for signal in labelled.iter().filter(|s| !hits.signals.contains(*s)) {
                    signals.push(format!("{}=label", signal.as_str()));
                }
                println!(
                    "{}\t[{}]\t{{{}}}",
                    norm.as_str().trim(),
                    signals.join(" "),
                    slot_names(hits.slots)
                );
            }
        }
    }
    Ok(())
}

/// Runs one labelled set through `engines` (the current pack's, then the candidate's
/// under --compare), with a progress bar on stderr.
fn eval_set(
    set: &pairwatch::eval::EvalSet,
    engines: &mut [Engine],
    threshold: pairwatch::detect::rules::Priority,
) -> Result<pairwatch::eval::SetResult> {
    let labels = pairwatch::eval::read_labels(open(&set.labels.to_string_lossy())?)
        .map_err(anyhow::Error::msg)?;
    let total = std::fs::metadata(&set.events).map(|m| m.len()).unwrap_or(0);
    let mut bar = Progress::new(total);
    let reports = pairwatch::eval::evaluate_each(
        open(&set.events.to_string_lossy())?,
        &labels,
        engines,
        &Limits::default(),
        |n| bar.update(n),
    )
    .map_err(anyhow::Error::msg)?;
    bar.finish();
    pairwatch::eval::SetResult::from_reports(set.name.clone(), reports, threshold)
        .map_err(anyhow::Error::msg)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn bench(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Engine { workload, rules } => {
            let pack = Arc::new(load_pack(rules.as_deref())?);
            let r = pairwatch::bench::run_engine(pack, workload.shape(), workload.events);
            println!(
                "engine (1 thread): {:.0} events/s ({} events in {:.2} s, {} alerts, {} pairs)",
                r.events_per_s, r.events, r.seconds, r.alerts, r.pairs
            );
            println!("normalisation alone: {:.0} texts/s", r.normalize_per_s);
            println!(
                "bare automaton scan: {:.0} texts/s; engine / bare = {:.2}",
                r.bare_scan_per_s,
                r.events_per_s / r.bare_scan_per_s
            );
            println!(
                "cpu {:.2} s, peak rss {:.0} MiB",
                r.cpu_seconds,
                mib(r.peak_rss_bytes)
            );
        }
        BenchCommand::Scaling {
            chart,
            max_pairs,
            events,
        } => {
            let defaults = pairwatch::bench::scaling::Plan::default();
            let plan = pairwatch::bench::scaling::Plan {
                pairs: defaults
                    .pairs
                    .iter()
                    .copied()
                    .filter(|&n| n <= max_pairs)
                    .collect(),
                events,
                base_pairs: defaults.base_pairs.min(max_pairs),
                ..defaults
            };
            let report = pairwatch::bench::scaling::run_scaling(&plan, |point| {
                eprintln!("bench scaling: {point}")
            })?;
            print!("{}", report.table());
            pairwatch::bench::chart::draw(&report, &chart)?;
            println!("chart: {}", chart.display());
        }
        BenchCommand::Memory { pairs, rules } => {
            let pack = Arc::new(load_pack(rules.as_deref())?);
            let r = pairwatch::bench::run_memory(pack, pairs);
            println!("pairs tracked: {}", r.pairs);
            println!(
                "idle pair: {:.0} bytes; active pair: {:.0} bytes",
                r.idle_bytes_per_pair, r.active_bytes_per_pair
            );
        }
        BenchCommand::Grpc {
            target,
            workload,
            batch,
            concurrency,
            rate,
            server_pid,
        } => {
            let load = pairwatch::bench::GrpcLoad {
                addr: target.addr,
                token: target.token,
                events: workload.events,
                batch,
                concurrency,
                rate,
                server_pid,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(pairwatch::bench::run_grpc(load, workload.shape()))?;
            println!(
                "grpc: {:.0} events/s accepted ({} of {} in {:.2} s)",
                r.events_per_s, r.accepted, r.events, r.seconds
            );
            match r.latency_ms {
                Some((p50, p99, p999)) => println!("event-to-alert over {} new alerts (updates not timed): p50 {p50:.2} ms, p99 {p99:.2} ms, p999 {p999:.2} ms", r.alerts),
                None => println!("event-to-alert: no alert seen"),
            }
            println!(
                "client: cpu {:.2} s, peak rss {:.0} MiB",
                r.client.cpu_seconds,
                mib(r.client.peak_rss_bytes)
            );
            if let Some(s) = r.server {
                println!(
                    "server: cpu {:.2} s, peak rss {:.0} MiB",
                    s.cpu_seconds,
                    mib(s.peak_rss_bytes)
                );
            }
        }
        BenchCommand::Kafka {
            brokers,
            workload,
            partitions,
            client,
            format,
        } => {
            let client = client
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("--client {kv:?} is not KEY=VALUE"))
                })
                .collect::<Result<Vec<_>>>()?;
            let load = pairwatch::kafka::bench::KafkaLoad {
                brokers,
                events: workload.events,
                partitions,
                client,
                format: pairwatch::kafka::codec::Format::parse(&format),
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(pairwatch::kafka::bench::run_kafka(load, workload.shape()))?;
            println!("kafka: {} events", r.events);
            println!("producer (idempotent): {:.0} events/s", r.produce_per_s);
            println!("bare consumer: {:.0} records/s", r.bare_consume_per_s);
            println!(
                "service: {:.0} events/s consumed and processed; service / bare = {:.2}",
                r.service_per_s,
                r.service_per_s / r.bare_consume_per_s
            );
            println!(
                "alerts produced: {}; process cpu during the service run {:.2} s; consumer thread busy {:.0}%",
                r.alerts, r.service_cpu_seconds, r.detect_busy * 100.0
            );
            println!(
                "state records produced: {} ({:.2} per event)",
                r.state_records,
                r.state_records as f64 / r.events.max(1) as f64
            );
        }
    }
    Ok(())
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise.
struct Progress {
    total: u64,
    shown: u64,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            total,
            shown: u64::MAX,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64) {
        if self.total == 0 {
            return;
        }
        let step = if self.tty { 100 } else { 10 };
        let pct = (done.min(self.total) * step / self.total) * (100 / step);
        if pct == self.shown {
            return;
        }
        self.shown = pct;
        if self.tty {
            let filled = (pct / 5) as usize;
            eprint!(
                "\r[{}{}] {pct:>3}%",
                "#".repeat(filled),
                " ".repeat(20 - filled)
            );
        } else {
            eprintln!("progress: {pct}%");
        }
    }

    fn finish(&self) {
        if self.tty && self.total > 0 {
            eprintln!();
        }
    }
}

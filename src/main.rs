//! The `fairgate` command: parses arguments, sets up logging, hands over to the library.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fairgate::{CompiledPolicy, Guard, check};

#[derive(Parser)]
#[command(
    name = "fairgate",
    version,
    about = "A streaming guardrail for ad targeting on Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the guard over a file of JSON-lines decisions, offline.
    Check {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Input file of JSON lines, or `-` for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Write alert events here, as JSON lines.
        #[arg(long)]
        alerts: Option<PathBuf>,
        /// Write a per-campaign report here, as one JSON document.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Judge as if the clock read this (epoch ms); default: event time.
        #[arg(long)]
        now_ms: Option<i64>,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write synthetic decisions as JSON lines (for trying policies).
    Generate {
        /// How many decisions.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// How many campaigns.
        #[arg(long, default_value_t = 20)]
        campaigns: usize,
        /// How many of them are skewed.
        #[arg(long, default_value_t = 1)]
        skewed: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Timestamp of the first decision (epoch ms).
        #[arg(long, default_value_t = 1_795_000_000_000)]
        start_ms: i64,
        /// Milliseconds between decisions.
        #[arg(long, default_value_t = 50)]
        step_ms: i64,
        /// One in this many is malformed (0: none).
        #[arg(long, default_value_t = 0)]
        malformed_every: u64,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; lists every problem found.
    Check {
        /// The policy file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fairgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => match CompiledPolicy::load(&file) {
            Ok(p) => {
                println!(
                    "{}: ok — policy {} ({} mode), {} dimension(s), {} pointer(s) stripped",
                    file.display(),
                    p.version,
                    p.mode.as_str(),
                    p.dimensions.len(),
                    p.always.len() + p.unless_personalised.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                Ok(ExitCode::from(1))
            }
        },
        Command::Check {
            policy,
            input,
            alerts,
            report,
            now_ms,
        } => {
            let p = CompiledPolicy::load(&policy)
                .with_context(|| format!("policy {}", policy.display()))?;
            let guard = Guard::new(p);
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let mut alert_file = match &alerts {
                Some(path) => Some(BufWriter::new(
                    File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => None,
            };
            let totals = if input == "-" {
                let stdin = std::io::stdin();
                check::run(
                    &guard,
                    stdin.lock(),
                    &mut out,
                    alert_file.as_mut().map(|w| w as &mut dyn Write),
                    now_ms,
                )?
            } else {
                let f = File::open(&input).with_context(|| format!("opening {input}"))?;
                check::run(
                    &guard,
                    BufReader::new(f),
                    &mut out,
                    alert_file.as_mut().map(|w| w as &mut dyn Write),
                    now_ms,
                )?
            };
            if let Some(mut w) = alert_file {
                w.flush()?;
            }
            eprintln!(
                "fairgate check: {} lines: {} output, {} blocked, {} dead letter; {} alerts; {} late, {} early",
                totals.lines,
                totals.output,
                totals.blocked,
                totals.dead_letter,
                totals.alerts,
                totals.late,
                totals.early
            );
            if let Some(path) = report {
                let doc = check::report(&guard, totals);
                let f =
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                serde_json::to_writer_pretty(BufWriter::new(f), &doc)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            count,
            campaigns,
            skewed,
            seed,
            start_ms,
            step_ms,
            malformed_every,
        } => {
            let mut s = fairgate::synth::Synth::new(seed, campaigns, skewed, start_ms);
            s.malformed_every = malformed_every;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            for i in 0..count {
                let (_, bytes) = s.next(start_ms + i as i64 * step_ms);
                out.write_all(&bytes)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

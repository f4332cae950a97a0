//! The broker-side helper of `scripts/bench-e2e` (which has no Kafka client
//! of its own): create topics, watch a group's progress, read a topic back.
//!
//! ```text
//! bench_probe create --brokers B --partitions 6 --log-append-time T1 T2 ...
//! bench_probe watch  --brokers B --group G --topic T [--interval-ms 100]
//!     one line per interval: `<epoch ms> <committed total> <end offsets total>`
//! bench_probe ends   --brokers B T1 T2 ...
//!     the records in those topics (end offsets summed)
//! bench_probe read   --brokers B --topic T
//!     one line per record: `<partition> <offset> <timestamp ms> <type> <payload bytes> <decision id>`
//! ```

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create topics (an existing one is an error).
    Create {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Stamp records with the broker's append time (message.timestamp.type).
        #[arg(long)]
        log_append_time: bool,
        /// Compacted (cleanup.policy=compact): the campaign table.
        #[arg(long)]
        compact: bool,
        topics: Vec<String>,
    },
    /// Print the group's committed total and the topic's end total, repeatedly.
    Watch {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// Print the sum of the topics' end offsets.
    Ends {
        #[arg(long)]
        brokers: String,
        topics: Vec<String>,
    },
    /// Print every record of the topic up to its end offsets at the start.
    Read {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
    },
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn consumer(brokers: &str, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?)
}

fn partitions(c: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| anyhow::anyhow!("no metadata for {topic}"))?;
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}

fn create(
    brokers: &str,
    n: i32,
    log_append_time: bool,
    compact: bool,
    names: &[String],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|t| {
            let mut nt = NewTopic::new(t, n, TopicReplication::Fixed(1));
            if log_append_time {
                nt = nt.set("message.timestamp.type", "LogAppendTime");
            }
            if compact {
                nt = nt.set("cleanup.policy", "compact");
            }
            nt
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for r in rt.block_on(admin.create_topics(&topics, &AdminOptions::new()))? {
        if let Err((t, e)) = r {
            anyhow::bail!("creating {t}: {e}");
        }
    }
    Ok(())
}

fn watch(brokers: &str, group: &str, topic: &str, every: Duration) -> anyhow::Result<()> {
    let c = consumer(brokers, group)?;
    let parts = partitions(&c, topic)?;
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition(topic, p);
    }
    let mut out = std::io::stdout().lock();
    loop {
        let committed: i64 = c
            .committed_offsets(tpl.clone(), TIMEOUT)?
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        let mut end = 0;
        for &p in &parts {
            end += c.fetch_watermarks(topic, p, TIMEOUT)?.1;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        // The driver closing the pipe ends the watch.
        if writeln!(out, "{now} {committed} {end}")
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
        std::thread::sleep(every);
    }
}

fn ends(brokers: &str, topics: &[String]) -> anyhow::Result<()> {
    let c = consumer(brokers, "bench-probe-ends")?;
    let mut total = 0;
    for t in topics {
        for p in partitions(&c, t)? {
            total += c.fetch_watermarks(t, p, TIMEOUT)?.1;
        }
    }
    println!("{total}");
    Ok(())
}

/// A record's decision id: its `fairgate-decision-id` header, else its
/// payload's top-level `id`, else `-`.
fn decision_id(m: &impl Message) -> String {
    #[derive(serde::Deserialize)]
    struct Doc {
        id: Option<String>,
    }
    let header = m.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == "fairgate-decision-id")
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    });
    header
        .or_else(|| serde_json::from_slice::<Doc>(m.payload()?).ok()?.id)
        .unwrap_or_else(|| "-".into())
}

fn read(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let c = consumer(brokers, "bench-probe-read")?;
    let mut tpl = TopicPartitionList::new();
    // Partition → its end offset when the read began.
    let mut ends = std::collections::HashMap::new();
    for p in partitions(&c, topic)? {
        let (lo, hi) = c.fetch_watermarks(topic, p, TIMEOUT)?;
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            ends.insert(p, hi);
        }
    }
    c.assign(&tpl)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while !ends.is_empty() {
        match c.poll(TIMEOUT) {
            Some(Ok(m)) => {
                let Some(&end) = ends.get(&m.partition()) else {
                    continue;
                };
                if m.offset() >= end {
                    continue;
                }
                let (ts, kind) = match m.timestamp() {
                    Timestamp::CreateTime(t) => (t, "create"),
                    Timestamp::LogAppendTime(t) => (t, "append"),
                    Timestamp::NotAvailable => (-1, "none"),
                };
                let id = decision_id(&m);
                let size = m.payload_len();
                writeln!(
                    out,
                    "{} {} {ts} {kind} {size} {id}",
                    m.partition(),
                    m.offset()
                )?;
                if m.offset() + 1 >= end {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => anyhow::bail!(
                "reading {topic}: nothing for {TIMEOUT:?}, {} partitions unfinished",
                ends.len()
            ),
        }
    }
    out.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Create {
            brokers,
            partitions,
            log_append_time,
            compact,
            topics,
        } => create(&brokers, partitions, log_append_time, compact, &topics),
        Command::Watch {
            brokers,
            group,
            topic,
            interval_ms,
        } => watch(&brokers, &group, &topic, Duration::from_millis(interval_ms)),
        Command::Ends { brokers, topics } => ends(&brokers, &topics),
        Command::Read { brokers, topic } => read(&brokers, &topic),
    }
}

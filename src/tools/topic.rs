//! `fairgate diff --brokers B --topic T --from X --to Y`: the decisions of a
//! topic within a time range, read once, read-only, in an order that
//! depends only on what the topic holds.
//!
//! * **Which records.** Of each partition, the records from the first whose
//!   timestamp is at or after `--from` (Kafka's offsets-for-times lookup)
//!   up to, not including, the first whose timestamp is at or after `--to`,
//!   or the partition's end (high watermark) as it was when the read began,
//!   whichever comes first. Records written after the start are not read.
//! * **Read-only.** The consumer assigns the partitions itself: it joins no
//!   group and commits nothing. (librdkafka wants a `group.id` before it
//!   assigns at all; the one given is never joined nor committed to.) Topic
//!   metadata is asked for without creating the topic.
//! * **In a fixed order.** The partitions are merged by (timestamp,
//!   partition, offset): the next record is the least of every unfinished
//!   partition's next record ([`Merge`]), so the order does not depend on
//!   when the broker answers. Each partition holds at most `buffer` records
//!   read ahead; a partition that has that many waiting is paused until the
//!   merge has taken half of them. Memory is bounded by partitions × buffer,
//!   not by the range.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A time given as epoch milliseconds (all digits, optionally negative) or
/// as an RFC 3339 time with its offset (`2026-11-23T10:00:00Z`,
/// `2026-11-23T11:00:00.250+01:00`): epoch milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i64>()
            .map_err(|_| format!("{s:?} is out of range for epoch milliseconds"));
    }
    t.parse::<jiff::Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|e| {
            format!(
                "{s:?} is neither epoch milliseconds nor an RFC 3339 time such as 2026-11-23T10:00:00Z ({e})"
            )
        })
}

/// One record read from the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub timestamp: i64,
    pub partition: i32,
    pub offset: i64,
    /// The value (a record without one reads as empty: a dead letter).
    pub payload: Vec<u8>,
}

/// One partition's place in the merge.
#[derive(Debug)]
struct Part {
    waiting: VecDeque<Rec>,
    /// Offsets below this were taken (a record seen again is dropped).
    next: i64,
    /// The high watermark at the start: the range ends before it.
    end: i64,
    finished: bool,
    paused: bool,
}

/// What the merge wants next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The least record of every unfinished partition's next one.
    Record(Rec),
    /// A partition that is not finished has nothing waiting: read more.
    Read,
    /// Every partition is finished and taken.
    Done,
}

/// The partitions of a range merged by (timestamp, partition, offset), each
/// holding at most `buffer` records. Pure: the reader feeds it.
#[derive(Debug)]
pub struct Merge {
    parts: BTreeMap<i32, Part>,
    to_ms: i64,
    buffer: usize,
}

impl Merge {
    /// A merge of records before `to_ms`, at most `buffer` (≥ 2) waiting per partition.
    pub fn new(to_ms: i64, buffer: usize) -> Merge {
        Merge {
            parts: BTreeMap::new(),
            to_ms,
            buffer: buffer.max(2),
        }
    }

    /// A partition read from `start` (an offset) to `end` (its high
    /// watermark at the start, excluded); `None`: nothing at or after `--from`.
    pub fn add(&mut self, partition: i32, start: Option<i64>, end: i64) {
        let finished = start.is_none_or(|s| s >= end);
        self.parts.insert(
            partition,
            Part {
                waiting: VecDeque::new(),
                next: start.unwrap_or(end),
                end,
                finished,
                paused: false,
            },
        );
    }

    /// Partitions still to be read from.
    pub fn unfinished(&self) -> Vec<i32> {
        self.parts
            .iter()
            .filter(|(_, p)| !p.finished)
            .map(|(&id, _)| id)
            .collect()
    }

    /// A record read from the topic. Returns whether its partition should
    /// now be paused (it has `buffer` records waiting, or is finished).
    pub fn offer(&mut self, r: Rec) -> bool {
        let buffer = self.buffer;
        let Some(p) = self.parts.get_mut(&r.partition) else {
            return false;
        };
        if p.finished || r.offset < p.next {
            let pause = p.finished && !p.paused;
            p.paused |= pause;
            return pause;
        }
        if r.offset >= p.end || r.timestamp >= self.to_ms {
            p.finished = true;
        } else {
            p.next = r.offset + 1;
            p.finished = p.next >= p.end;
            p.waiting.push_back(r);
        }
        let pause = !p.paused && (p.finished || p.waiting.len() >= buffer);
        p.paused |= pause;
        pause
    }

    /// librdkafka's end of partition, with the consumer's position there
    /// (`None` when it cannot say: then the records themselves, or the
    /// stall timeout, end the read). The partition is finished only when
    /// that position reached the end captured at the start: an end event
    /// fetched before a pause may arrive after records that are still to
    /// be read again, and must not end the partition early. (The position
    /// rather than the last offset taken, so that offsets missing at the
    /// tail — a compacted topic — still end it.)
    pub fn end_of_partition(&mut self, partition: i32, position: Option<i64>) {
        if let Some(p) = self.parts.get_mut(&partition)
            && position.is_some_and(|at| at >= p.end)
        {
            p.finished = true;
        }
    }

    /// The next record in (timestamp, partition, offset) order, when every
    /// unfinished partition has one waiting.
    pub fn take(&mut self) -> Next {
        let mut least: Option<(i64, i32, i64)> = None;
        for (&id, p) in &self.parts {
            match p.waiting.front() {
                Some(r) => {
                    let k = (r.timestamp, id, r.offset);
                    least = Some(least.map_or(k, |l| l.min(k)));
                }
                None if !p.finished => return Next::Read,
                None => {}
            }
        }
        match least {
            Some((_, id, _)) => {
                let p = self.parts.get_mut(&id).expect("found above");
                Next::Record(p.waiting.pop_front().expect("found above"))
            }
            None => Next::Done,
        }
    }

    /// Paused partitions that have taken half their buffer and may read again.
    pub fn to_resume(&mut self) -> Vec<i32> {
        let half = self.buffer / 2;
        let mut out = Vec::new();
        for (&id, p) in &mut self.parts {
            if p.paused && !p.finished && p.waiting.len() <= half {
                p.paused = false;
                out.push(id);
            }
        }
        out
    }
}

/// What `fairgate diff` reads from a topic.
#[derive(Debug, Clone)]
pub struct TopicRange {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// How long to wait for the brokers: metadata, the offsets lookup, and
    /// any stretch without a record while records are due.
    pub timeout: Duration,
    /// Records read ahead per partition, at most.
    pub buffer: usize,
    /// librdkafka settings passed through (TLS, SASL, …).
    pub settings: Vec<(String, String)>,
}

/// Why the topic could not be read: each names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("--from ({from_ms}) must be before --to ({to_ms})")]
    Order { from_ms: i64, to_ms: i64 },
    #[error(
        "-X {0}: set by fairgate diff itself (it reads without joining a group and commits nothing)"
    )]
    Managed(String),
    #[error("kafka client: {0}")]
    Client(Box<KafkaError>),
    #[error("cannot reach the brokers {brokers} within {secs} s: {source}")]
    Unreachable {
        brokers: String,
        secs: u64,
        source: Box<KafkaError>,
    },
    #[error("topic {topic:?} does not exist on {brokers}")]
    UnknownTopic { topic: String, brokers: String },
    #[error("topic {topic:?}: {what} failed: {source}")]
    Lookup {
        topic: String,
        what: String,
        source: Box<KafkaError>,
    },
    #[error(
        "topic {topic:?}: nothing read from partition(s) {partitions:?} for {secs} s while records within the range are due (brokers unreachable?)"
    )]
    Stalled {
        topic: String,
        partitions: Vec<i32>,
        secs: u64,
    },
    #[error("topic {topic:?}: {source}")]
    Read {
        topic: String,
        source: Box<KafkaError>,
    },
}

/// Settings fairgate diff sets itself.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "allow.auto.create.topics",
];

/// The read of a range: an iterator over the records' values, in the
/// merge's order; an error ends it.
pub struct TopicReader {
    consumer: BaseConsumer,
    range: TopicRange,
    merge: Merge,
    last_read: Instant,
    failed: bool,
}

impl TopicRange {
    fn client(&self) -> Result<BaseConsumer, TopicError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("fairgate-diff.{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("allow.auto.create.topics", "false")
            .set("auto.offset.reset", "earliest")
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &self.settings {
            if MANAGED.contains(&k.as_str()) {
                return Err(TopicError::Managed(k.clone()));
            }
            c.set(k, v);
        }
        c.create().map_err(|e| TopicError::Client(Box::new(e)))
    }

    /// Connect, find the partitions, their ends and where `--from` falls,
    /// and start reading.
    pub fn open(self) -> Result<TopicReader, TopicError> {
        if self.from_ms >= self.to_ms {
            return Err(TopicError::Order {
                from_ms: self.from_ms,
                to_ms: self.to_ms,
            });
        }
        let consumer = self.client()?;
        let parts = self.partitions(&consumer)?;
        let lookup = |what: &str, source| TopicError::Lookup {
            topic: self.topic.clone(),
            what: what.to_string(),
            source: Box::new(source),
        };
        let mut ask = TopicPartitionList::new();
        for &p in &parts {
            ask.add_partition_offset(&self.topic, p, Offset::Offset(self.from_ms))
                .map_err(|e| lookup("the offsets lookup for --from", e))?;
        }
        let found = consumer
            .offsets_for_times(ask, self.timeout)
            .map_err(|e| lookup("the offsets lookup for --from", e))?;
        let mut merge = Merge::new(self.to_ms, self.buffer);
        let mut assign = TopicPartitionList::new();
        for &p in &parts {
            let (_, end) = consumer
                .fetch_watermarks(&self.topic, p, self.timeout)
                .map_err(|e| lookup(&format!("reading partition {p}'s end"), e))?;
            let start = match found.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            merge.add(p, start, end);
            if let Some(o) = start.filter(|&o| o < end) {
                assign
                    .add_partition_offset(&self.topic, p, Offset::Offset(o))
                    .map_err(|e| TopicError::Client(Box::new(e)))?;
            }
        }
        consumer
            .assign(&assign)
            .map_err(|e| TopicError::Client(Box::new(e)))?;
        Ok(TopicReader {
            consumer,
            range: self,
            merge,
            last_read: Instant::now(),
            failed: false,
        })
    }

    /// The topic's partitions; an unreachable cluster or an unknown topic is an error.
    fn partitions(&self, c: &BaseConsumer) -> Result<Vec<i32>, TopicError> {
        let md = c
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(|source| TopicError::Unreachable {
                brokers: self.brokers.clone(),
                secs: self.timeout.as_secs(),
                source: Box::new(source),
            })?;
        let t = md.topics().iter().find(|t| t.name() == self.topic);
        match t {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                Ok(ids)
            }
            _ => Err(TopicError::UnknownTopic {
                topic: self.topic.clone(),
                brokers: self.brokers.clone(),
            }),
        }
    }
}

impl TopicReader {
    /// Pause or resume partitions (a failure only costs buffering).
    fn set_paused(&self, parts: &[i32], pause: bool) {
        let mut tpl = TopicPartitionList::new();
        for &p in parts {
            tpl.add_partition(&self.range.topic, p);
        }
        let _ = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
    }

    /// Read one record (or event) from the consumer into the merge.
    fn read(&mut self) -> Result<(), TopicError> {
        match self.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let rec = Rec {
                    timestamp: m.timestamp().to_millis().unwrap_or(-1),
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                };
                drop(m);
                self.last_read = Instant::now();
                if self.merge.offer(rec.clone()) {
                    self.set_paused(&[rec.partition], true);
                }
                Ok(())
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                self.last_read = Instant::now();
                let position = self.consumer.position().ok().and_then(|tpl| {
                    tpl.find_partition(&self.range.topic, p)
                        .and_then(|e| e.offset().to_raw())
                        .filter(|&o| o >= 0)
                });
                self.merge.end_of_partition(p, position);
                Ok(())
            }
            Some(Err(e)) if is_transient(&e) => self.check_stalled(),
            Some(Err(source)) => Err(TopicError::Read {
                topic: self.range.topic.clone(),
                source: Box::new(source),
            }),
            None => self.check_stalled(),
        }
    }

    fn check_stalled(&self) -> Result<(), TopicError> {
        if self.last_read.elapsed() < self.range.timeout {
            return Ok(());
        }
        Err(TopicError::Stalled {
            topic: self.range.topic.clone(),
            partitions: self.merge.unfinished(),
            secs: self.range.timeout.as_secs(),
        })
    }
}

/// Errors librdkafka recovers from by itself (a broker down for a moment).
fn is_transient(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
        )
    )
}

impl Iterator for TopicReader {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.merge.take() {
                Next::Record(r) => {
                    let resume = self.merge.to_resume();
                    if !resume.is_empty() {
                        self.set_paused(&resume, false);
                    }
                    return Some(Ok(r.payload));
                }
                Next::Done => return None,
                Next::Read => {
                    if let Err(e) = self.read() {
                        self.failed = true;
                        return Some(Err(std::io::Error::other(e)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, timestamp: i64) -> Rec {
        Rec {
            timestamp,
            partition,
            offset,
            payload: format!("{partition}/{offset}").into_bytes(),
        }
    }

    #[test]
    fn times_are_epoch_milliseconds_or_rfc_3339() {
        assert_eq!(parse_time("1795000000000"), Ok(1_795_000_000_000));
        assert_eq!(parse_time("-5"), Ok(-5));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1_500));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        let e = parse_time("yesterday").unwrap_err();
        assert!(e.contains("\"yesterday\" is neither"), "{e}");
        assert!(parse_time("2026-11-23T10:00:00").is_err(), "no offset");
        assert!(parse_time("99999999999999999999").is_err());
    }

    /// The merge of the same partitions, their records offered in the
    /// order `arrival` gives (a partition's own in offset order), and read
    /// whenever the merge asks: the records taken, in order.
    fn merged(
        parts: &[Vec<Rec>],
        to_ms: i64,
        buffer: usize,
        mut arrival: fastrand::Rng,
    ) -> Vec<Rec> {
        let mut m = Merge::new(to_ms, buffer);
        let mut queues: Vec<VecDeque<Rec>> = Vec::new();
        for (i, recs) in parts.iter().enumerate() {
            let end = recs.last().map_or(0, |r| r.offset + 1);
            m.add(i as i32, recs.first().map(|r| r.offset), end);
            queues.push(recs.iter().cloned().collect());
        }
        let mut paused = vec![false; parts.len()];
        let mut out = Vec::new();
        loop {
            match m.take() {
                Next::Record(r) => {
                    out.push(r);
                    for p in m.to_resume() {
                        paused[p as usize] = false;
                    }
                }
                Next::Done => return out,
                Next::Read => {
                    let open: Vec<usize> = (0..queues.len())
                        .filter(|&i| !paused[i] && !queues[i].is_empty())
                        .collect();
                    assert!(!open.is_empty(), "the merge waits on a paused partition");
                    let i = open[arrival.usize(..open.len())];
                    let r = queues[i].pop_front().unwrap();
                    if m.offer(r) {
                        paused[i] = true;
                    }
                }
            }
        }
    }

    #[test]
    fn the_merge_order_depends_only_on_what_the_partitions_hold() {
        let mut g = fastrand::Rng::with_seed(7);
        let parts: Vec<Vec<Rec>> = (0..4)
            .map(|p| {
                let mut offset = 10 * p as i64;
                (0..200)
                    .map(|_| {
                        offset += 1 + i64::from(g.u8(..3) == 0);
                        rec(p, offset, 1_000 + g.i64(0..500))
                    })
                    .collect()
            })
            .collect();
        let first = merged(&parts, 1_450, 8, fastrand::Rng::with_seed(1));
        for seed in 2..30 {
            assert_eq!(
                merged(&parts, 1_450, 8, fastrand::Rng::with_seed(seed)),
                first
            );
        }
        // Each partition stops at its first record at or after --to.
        for (p, recs) in parts.iter().enumerate() {
            let want: Vec<&Rec> = recs.iter().take_while(|r| r.timestamp < 1_450).collect();
            let got: Vec<&Rec> = first.iter().filter(|r| r.partition == p as i32).collect();
            assert_eq!(got, want, "partition {p}");
        }
        // The heads are taken least first, by (timestamp, partition, offset).
        let mut heads: Vec<usize> = vec![0; parts.len()];
        for r in &first {
            let least = (0..parts.len())
                .filter_map(|p| {
                    let want = parts[p].iter().take_while(|x| x.timestamp < 1_450).count();
                    (heads[p] < want).then(|| {
                        let x = &parts[p][heads[p]];
                        (x.timestamp, p as i32, x.offset)
                    })
                })
                .min()
                .unwrap();
            assert_eq!((r.timestamp, r.partition, r.offset), least);
            heads[r.partition as usize] += 1;
        }
    }

    #[test]
    fn a_partition_ends_at_its_end_at_the_start_and_repeats_are_dropped() {
        let mut m = Merge::new(i64::MAX, 4);
        m.add(0, Some(5), 7);
        m.add(1, None, 3);
        m.add(2, Some(9), 9);
        assert_eq!(m.unfinished(), [0]);
        assert!(!m.offer(rec(0, 5, 1)));
        assert!(!m.offer(rec(0, 5, 1)), "a record seen again is dropped");
        assert!(m.offer(rec(0, 6, 2)), "the last before the end finishes it");
        assert!(!m.offer(rec(0, 7, 3)), "written after the start: not read");
        assert_eq!(m.take(), Next::Record(rec(0, 5, 1)));
        assert_eq!(m.take(), Next::Record(rec(0, 6, 2)));
        assert_eq!(m.take(), Next::Done);
    }

    #[test]
    fn a_full_partition_is_paused_and_resumed_at_half() {
        let mut m = Merge::new(i64::MAX, 4);
        m.add(0, Some(0), 100);
        m.add(1, Some(0), 100);
        for o in 0..3 {
            assert!(!m.offer(rec(0, o, o)));
        }
        assert!(m.offer(rec(0, 3, 3)), "four waiting: paused");
        assert_eq!(m.take(), Next::Read, "partition 1 has nothing yet");
        // An end event from before the partition's end (one fetched before
        // a pause) or without a position does not end it.
        m.end_of_partition(1, Some(40));
        m.end_of_partition(1, None);
        assert_eq!(m.take(), Next::Read, "partition 1 is not finished");
        m.end_of_partition(1, Some(100));
        assert_eq!(m.take(), Next::Record(rec(0, 0, 0)));
        assert!(m.to_resume().is_empty(), "three waiting");
        assert_eq!(m.take(), Next::Record(rec(0, 1, 1)));
        assert_eq!(m.to_resume(), [0]);
        assert!(m.to_resume().is_empty(), "resumed once");
    }
}

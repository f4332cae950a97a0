//! Judge threads: each runs the stage over its partitions' records, in
//! order, and hands the results to the producer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::producer::ThreadedProducer;
use tokio::sync::mpsc;

use super::context::ProducerCtx;
use super::error::PipelineError;
use super::records::Outgoing;
use super::send::send_blocking;
use super::shared::Shared;
use super::stage::{Input, Stage};
use crate::config::Topics;

/// One input record, handed from the consume loop to the judge thread that
/// owns its partition.
#[derive(Debug)]
pub(super) struct Job {
    /// The partition's ownership when the record was read.
    pub(super) generation: u64,
    /// Bytes it took of the in-flight bound (key and payload).
    pub(super) size: usize,
    pub(super) input: Input,
}

/// A judge thread: runs the stage over its partitions' records in order and
/// hands the results to the producer.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: ThreadedProducer<ProducerCtx>,
    pub(super) topics: Topics,
    pub(super) stage: Arc<dyn Stage>,
}

impl Worker {
    /// Until the consume loop drops its queue (drain) or the pipeline abandons.
    pub(super) fn run(self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            if let Err(e) = self.handle(job) {
                self.shared.abandon.store(true, Ordering::Relaxed);
                let _ = self.shared.fatal_tx.send(e);
            }
        }
    }

    fn handle(&self, job: Job) -> Result<(), PipelineError> {
        let s = &self.shared;
        let (partition, generation, offset) =
            (job.input.partition, job.generation, job.input.offset);
        // Not ours any more (or ours again since it was read): the
        // partition's owner reads it again from the committed offset.
        if s.abandon.load(Ordering::Relaxed)
            || s.offsets.lock().generation(partition) != Some(generation)
        {
            s.in_flight.release(1);
            s.in_flight.release_bytes(job.size);
            return Ok(());
        }
        let start = Instant::now();
        let produced = self.stage.process(job.input);
        s.metrics.processing.observe(start.elapsed().as_secs_f64());
        let size = job.size;
        // Counted by the stage (when it holds): the record also waits for
        // the flush that publishes its counts. Held after it is begun, so
        // the flush that releases it finds it.
        let held = s.holds.is_some();
        if !s.offsets.lock().begin_held(
            partition,
            generation,
            offset,
            produced.len() as u32,
            size,
            held,
        ) {
            s.in_flight.release(1);
            s.in_flight.release_bytes(size);
            return Ok(());
        }
        if let Some(h) = &s.holds {
            h.push((partition, generation, offset));
        }
        if produced.is_empty() {
            // Nothing to acknowledge: done with at once.
            s.in_flight.release_bytes(size);
        }
        for p in produced {
            let mut o = Outgoing::new(p.out, Some((partition, generation, offset)), p.event_ts_ms);
            o.token.input_bytes = size;
            send_blocking(s, &self.producer, &self.topics, o)?;
        }
        Ok(())
    }
}

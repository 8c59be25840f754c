//! The builder thread: drains the row ring and emits Arrow `RecordBatch`es into a queue that
//! Python pulls from (blocking waits happen here, never on the control thread).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch,
};
use arrow_schema::SchemaRef;

use super::schema::{frame_schema, list_item_field, FrameLayout};
use super::{RecordError, Row, RowKind};

/// Tuning of the builder.
#[derive(Debug, Clone, Copy)]
pub struct BuilderConfig {
    /// A batch is emitted once this many rows are buffered...
    pub batch_rows: usize,
    /// ...or once the oldest buffered row is this old, so Python sees rows promptly.
    pub max_latency: Duration,
    /// How often the builder looks at the ring when it is empty.
    pub poll_interval: Duration,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        Self {
            batch_rows: 256,
            max_latency: Duration::from_millis(100),
            poll_interval: Duration::from_millis(2),
        }
    }
}

/// Creates the wait-free ring between the control thread and the builder.
pub fn row_ring(capacity: usize) -> (rtrb::Producer<Row>, rtrb::Consumer<Row>) {
    rtrb::RingBuffer::new(capacity)
}

#[derive(Default)]
struct QueueState {
    batches: VecDeque<RecordBatch>,
    /// Highest episode index whose end marker has been flushed.
    last_flushed_episode: Option<i64>,
    rows_emitted: u64,
    /// The builder has exited: no further batch will come.
    closed: bool,
}

/// Batches waiting for Python, plus what the builder has flushed so far.
pub struct BatchQueue {
    state: Mutex<QueueState>,
    changed: Condvar,
}

impl BatchQueue {
    fn new() -> Self {
        Self {
            state: Mutex::new(QueueState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic elsewhere cannot leave the queue half-updated: every update is one push.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Next batch, waiting up to `timeout`. `None` when nothing arrived in time or when the
    /// builder has closed and everything was taken.
    pub fn pop(&self, timeout: Duration) -> Option<RecordBatch> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.batches.pop_front() {
                return Some(batch);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until every row of `episode` is in the queue. False on timeout or if the
    /// builder closed before the episode's end marker arrived.
    pub fn wait_episode_flushed(&self, episode: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.last_flushed_episode.is_some_and(|e| e >= episode) {
                return true;
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Batches currently waiting.
    pub fn len(&self) -> usize {
        self.lock().batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the builder exited (the loop stopped and every row was flushed).
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Rows put into batches so far.
    pub fn rows_emitted(&self) -> u64 {
        self.lock().rows_emitted
    }

    fn push(&self, batch: RecordBatch) {
        let mut state = self.lock();
        state.rows_emitted += batch.num_rows() as u64;
        state.batches.push_back(batch);
        drop(state);
        self.changed.notify_all();
    }

    fn mark_flushed(&self, episode: i64) {
        let mut state = self.lock();
        state.last_flushed_episode = Some(
            state
                .last_flushed_episode
                .map_or(episode, |e| e.max(episode)),
        );
        drop(state);
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Column buffers of the batch being built.
struct Columns {
    schema: SchemaRef,
    state_len: usize,
    action_len: usize,
    capture_time_ns: Vec<i64>,
    state: Vec<f32>,
    action: Vec<f32>,
    tick_index: Vec<i64>,
    lateness_ns: Vec<i64>,
    tick_busy_ns: Vec<i64>,
    episode_index: Vec<i64>,
    intervention: Vec<bool>,
}

impl Columns {
    fn new(layout: &FrameLayout) -> Self {
        Self {
            schema: frame_schema(layout),
            state_len: layout.state_len(),
            action_len: layout.action_len(),
            capture_time_ns: Vec::new(),
            state: Vec::new(),
            action: Vec::new(),
            tick_index: Vec::new(),
            lateness_ns: Vec::new(),
            tick_busy_ns: Vec::new(),
            episode_index: Vec::new(),
            intervention: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.capture_time_ns.len()
    }

    fn push(&mut self, row: &Row) {
        self.capture_time_ns.push(row.capture_time_ns);
        self.state
            .extend(row.state.iter().take(self.state_len).copied());
        self.action
            .extend(row.action.iter().take(self.action_len).copied());
        self.tick_index.push(row.tick_index as i64);
        self.lateness_ns.push(row.lateness_ns);
        self.tick_busy_ns.push(row.tick_busy_ns);
        self.episode_index.push(row.episode_index);
        self.intervention.push(row.intervention);
    }

    fn take_batch(&mut self) -> Result<RecordBatch, RecordError> {
        let list = |values: Vec<f32>, size: usize| -> ArrayRef {
            Arc::new(FixedSizeListArray::new(
                list_item_field(),
                size as i32,
                Arc::new(Float32Array::from(values)),
                None,
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(std::mem::take(&mut self.capture_time_ns))),
            list(std::mem::take(&mut self.state), self.state_len),
            list(std::mem::take(&mut self.action), self.action_len),
            Arc::new(Int64Array::from(std::mem::take(&mut self.tick_index))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.lateness_ns))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.tick_busy_ns))),
            Arc::new(Int64Array::from(std::mem::take(&mut self.episode_index))),
            Arc::new(BooleanArray::from(std::mem::take(&mut self.intervention))),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Handle of the running builder thread.
pub struct BatchBuilder {
    queue: Arc<BatchQueue>,
    schema: SchemaRef,
    thread: Option<JoinHandle<()>>,
}

impl BatchBuilder {
    /// Starts the builder on `consumer`. It runs until the ring's producer is dropped (the
    /// control thread ended) and the ring is drained, then closes the queue.
    pub fn spawn(
        layout: &FrameLayout,
        config: BuilderConfig,
        mut consumer: rtrb::Consumer<Row>,
    ) -> Result<Self, RecordError> {
        let queue = Arc::new(BatchQueue::new());
        let schema = frame_schema(layout);
        let mut columns = Columns::new(layout);
        let thread_queue = queue.clone();
        let thread = std::thread::Builder::new()
            .name("openk-batch-builder".into())
            .spawn(move || {
                let mut oldest: Option<Instant> = None;
                loop {
                    let mut got_any = false;
                    while let Ok(row) = consumer.pop() {
                        got_any = true;
                        match row.kind {
                            RowKind::Data => {
                                if columns.len() == 0 {
                                    oldest = Some(Instant::now());
                                }
                                columns.push(&row);
                                if columns.len() >= config.batch_rows {
                                    flush(&mut columns, &thread_queue);
                                    oldest = None;
                                }
                            }
                            RowKind::EpisodeEnd => {
                                flush(&mut columns, &thread_queue);
                                oldest = None;
                                thread_queue.mark_flushed(row.episode_index);
                            }
                        }
                    }
                    if oldest.is_some_and(|t| t.elapsed() >= config.max_latency) {
                        flush(&mut columns, &thread_queue);
                        oldest = None;
                    }
                    if !got_any {
                        if consumer.is_abandoned() && consumer.is_empty() {
                            flush(&mut columns, &thread_queue);
                            thread_queue.close();
                            return;
                        }
                        std::thread::sleep(config.poll_interval);
                    }
                }
            })
            .map_err(RecordError::Thread)?;
        Ok(Self {
            queue,
            schema,
            thread: Some(thread),
        })
    }

    pub fn queue(&self) -> Arc<BatchQueue> {
        self.queue.clone()
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Waits for the builder to drain and exit (the producer must be gone).
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn flush(columns: &mut Columns, queue: &BatchQueue) {
    if columns.len() == 0 {
        return;
    }
    match columns.take_batch() {
        Ok(batch) => queue.push(batch),
        // Only a layout/row mismatch could fail here, which the layout type rules out; the
        // rows are dropped rather than taking down the process.
        Err(e) => log::error!("dropping {} rows: {e}", columns.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn layout() -> FrameLayout {
        FrameLayout::new(
            vec!["a.pos".into(), "b.pos".into(), "a.vel".into()],
            vec!["a.pos".into(), "b.pos".into()],
        )
        .unwrap()
    }

    fn data_row(i: u64) -> Row {
        let mut row = Row::EMPTY;
        row.capture_time_ns = 1000 + i as i64;
        row.tick_index = i;
        row.state[0] = i as f32;
        row.state[2] = -(i as f32);
        row.action[1] = 2.0 * i as f32;
        row
    }

    #[test]
    fn rows_come_out_in_order_with_values_and_episode_flushes() {
        let (mut tx, rx) = row_ring(64);
        let cfg = BuilderConfig {
            batch_rows: 4,
            max_latency: Duration::from_secs(60),
            poll_interval: Duration::from_millis(1),
        };
        let builder = BatchBuilder::spawn(&layout(), cfg, rx).unwrap();
        let queue = builder.queue();
        for i in 0..10 {
            tx.push(data_row(i)).unwrap();
        }
        tx.push(Row::episode_end(0)).unwrap();
        assert!(queue.wait_episode_flushed(0, Duration::from_secs(10)));
        drop(tx);
        builder.join();
        let mut sizes = vec![];
        let mut ticks = vec![];
        while let Some(batch) = queue.pop(Duration::ZERO) {
            sizes.push(batch.num_rows());
            let state = batch
                .column(1)
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .unwrap();
            let values = state
                .values()
                .as_any()
                .downcast_ref::<Float32Array>()
                .unwrap();
            for r in 0..batch.num_rows() {
                let t = batch
                    .column(3)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(r);
                ticks.push(t);
                assert_eq!(values.value(r * 3), t as f32);
                assert_eq!(values.value(r * 3 + 2), -(t as f32));
            }
            assert_eq!(state.len(), batch.num_rows());
        }
        // Two full batches, then the episode end flushes the remaining two rows.
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(ticks, (0..10).collect::<Vec<i64>>());
        assert!(queue.is_closed());
    }

    #[test]
    fn stale_rows_are_flushed_by_latency() {
        let (mut tx, rx) = row_ring(8);
        let cfg = BuilderConfig {
            batch_rows: 1000,
            max_latency: Duration::from_millis(5),
            poll_interval: Duration::from_millis(1),
        };
        let builder = BatchBuilder::spawn(&layout(), cfg, rx).unwrap();
        tx.push(data_row(7)).unwrap();
        let batch = builder.queue().pop(Duration::from_secs(10)).unwrap();
        assert_eq!(batch.num_rows(), 1);
        drop(tx);
        builder.join();
    }
}

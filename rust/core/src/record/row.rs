//! One dataset row as it leaves the control thread: plain `Copy` data so the ring never
//! allocates.

/// Widest observation a row carries (OpenK follower: 17 values).
pub const MAX_STATE: usize = 32;
/// Widest action a row carries (OpenK follower: 7 values).
pub const MAX_ACTION: usize = 16;

/// What a ring entry means to the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A data row of the current episode.
    Data,
    /// The episode with this index ended: flush what is buffered so the episode's rows are
    /// all in the batch queue.
    EpisodeEnd,
}

/// A row of the recording. Only the first `state_len` / `action_len` values of the arrays
/// (fixed by the [`super::FrameLayout`]) are meaningful.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub kind: RowKind,
    /// CLOCK_MONOTONIC ns at the tick's deadline wake-up (same clock as `clock::now_ns`).
    pub capture_time_ns: i64,
    /// Control tick counter since the loop started.
    pub tick_index: u64,
    /// How late the tick woke up compared with its absolute deadline, in ns.
    pub lateness_ns: i64,
    /// Wall time the tick's bus exchange took, in ns.
    pub tick_busy_ns: i64,
    pub episode_index: i64,
    pub state: [f32; MAX_STATE],
    pub action: [f32; MAX_ACTION],
    /// The leader drove this row's goal (a human intervention in a policy rollout, or plain
    /// teleoperation); false when the goal schedule (a policy, a replay) drove it.
    pub intervention: bool,
}

impl Row {
    pub const EMPTY: Row = Row {
        kind: RowKind::Data,
        capture_time_ns: 0,
        tick_index: 0,
        lateness_ns: 0,
        tick_busy_ns: 0,
        episode_index: 0,
        state: [0.0; MAX_STATE],
        action: [0.0; MAX_ACTION],
        intervention: false,
    };

    /// The marker closing episode `episode_index`.
    pub fn episode_end(episode_index: i64) -> Row {
        Row {
            kind: RowKind::EpisodeEnd,
            episode_index,
            ..Row::EMPTY
        }
    }
}

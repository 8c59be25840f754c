//! Serving several parts at once: each extra part gets a persistent thread; a tick hands it
//! the goal, wakes it (futex unpark, no allocation) and waits for its state.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};

use crate::arm::part::{FaultKind, Part, PartError};

const IDLE: u32 = 0;
const GO: u32 = 1;
const DONE: u32 = 2;
const EXIT: u32 = 3;

/// One part plus its tick buffers.
pub struct PartSlot {
    pub part: Box<dyn Part>,
    pub goal: Vec<f32>,
    pub state: Vec<f32>,
    pub retries: Vec<u32>,
    pub result: Result<(), PartError>,
    /// How long the last exchange took, ns.
    pub round_ns: u64,
    /// Why the part's code panicked, if it did: the part is not called again (its state may be
    /// half-updated) and every further round fails with this, so the loop stops safely.
    panicked: Option<String>,
}

impl PartSlot {
    pub fn new(part: Box<dyn Part>) -> Self {
        let goal = vec![0.0; part.goal_names().len()];
        let state = vec![0.0; part.state_names().len()];
        // One counter per motor, plus one for faults not tied to a motor.
        let retries = vec![0; part.motor_names().len() + 1];
        Self {
            part,
            goal,
            state,
            retries,
            result: Ok(()),
            round_ns: 0,
            panicked: None,
        }
    }

    pub fn run(&mut self) {
        self.retries.iter_mut().for_each(|r| *r = 0);
        let start = crate::clock::now_ns();
        if let Some(why) = &self.panicked {
            self.result = Err(PartError::new(FaultKind::Other, None, why.clone()));
            return;
        }
        // A bug in a part must not take the control thread (or a bus thread the control
        // thread waits for) down with it.
        let exchanged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.part
                .exchange(&self.goal, &mut self.state, &mut self.retries)
        }));
        self.result = match exchanged {
            Ok(result) => result,
            Err(payload) => {
                let detail = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let why = format!(
                    "internal error: the code driving {} panicked ({detail}); please report it",
                    self.part.label()
                );
                self.panicked = Some(why.clone());
                Err(PartError::new(FaultKind::Other, None, why))
            }
        };
        self.round_ns = crate::clock::now_ns().saturating_sub(start);
    }
}

struct Shared {
    phase: AtomicU32,
    slot: Mutex<PartSlot>,
    controller: Thread,
}

fn lock(slot: &Mutex<PartSlot>) -> MutexGuard<'_, PartSlot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// A part served by its own thread.
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// `controller` is the thread that dispatches and waits (the control thread).
    /// `setup` runs first on the new thread (realtime policy, pinning).
    pub fn spawn(
        slot: PartSlot,
        controller: Thread,
        setup: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            phase: AtomicU32::new(IDLE),
            slot: Mutex::new(slot),
            controller,
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("openk-bus".into())
            .spawn(move || {
                setup();
                loop {
                    match thread_shared.phase.load(Ordering::Acquire) {
                        GO => {
                            lock(&thread_shared.slot).run();
                            // An EXIT stored while the round ran (the loop stopping with a
                            // round in flight) must survive: overwriting it with DONE would
                            // leave this thread parked forever and its owner's join hanging.
                            let _ = thread_shared.phase.compare_exchange(
                                GO,
                                DONE,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            );
                            thread_shared.controller.unpark();
                        }
                        EXIT => return,
                        _ => std::thread::park(),
                    }
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub fn slot(&self) -> MutexGuard<'_, PartSlot> {
        lock(&self.shared.slot)
    }

    /// Starts one exchange on the worker's thread.
    pub fn dispatch(&self) {
        self.shared.phase.store(GO, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }

    /// Waits (on the controller thread) until the dispatched exchange finished.
    pub fn wait(&self) {
        let mut spins = 0u32;
        while self.shared.phase.load(Ordering::Acquire) != DONE {
            // A short spin catches fast exchanges without a futex round trip.
            if spins < 200 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
        self.shared.phase.store(IDLE, Ordering::Release);
    }

    /// Stops the thread and gives the part back.
    pub fn into_slot(mut self) -> Option<PartSlot> {
        self.shared.phase.store(EXIT, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let shared = Arc::try_unwrap(std::mem::replace(
            &mut self.shared,
            Arc::new(Shared {
                phase: AtomicU32::new(EXIT),
                slot: Mutex::new(PartSlot::new(Box::new(Vacant("released part")))),
                controller: std::thread::current(),
            }),
        ))
        .ok()?;
        Some(shared.slot.into_inner().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.phase.store(EXIT, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A part with no motors that does nothing: what stands in a part's slot while the part is
/// elsewhere (moving onto its worker thread, or handed back by it). `label` says which.
pub(crate) struct Vacant(pub(crate) &'static str);

impl Part for Vacant {
    fn label(&self) -> &str {
        self.0
    }
    fn motor_names(&self) -> &[String] {
        &[]
    }
    fn goal_names(&self) -> &[String] {
        &[]
    }
    fn state_names(&self) -> &[String] {
        &[]
    }
    fn exchange(&mut self, _: &[f32], _: &mut [f32], _: &mut [u32]) -> Result<(), PartError> {
        Ok(())
    }
    fn read_state(&mut self, _: &mut [f32]) -> Result<(), PartError> {
        Ok(())
    }
    fn stop(&mut self, _: crate::arm::part::StopAction) -> Result<(), PartError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::control::testing::HookedPart;

    /// A part whose exchange takes a while, so a stop lands while a round is in flight.
    fn slow() -> Box<dyn Part> {
        Box::new(HookedPart::slow(
            Box::new(Vacant("slow part")),
            Duration::from_millis(50),
        ))
    }

    #[test]
    fn dropping_a_worker_with_a_round_in_flight_ends_its_thread() {
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..5 {
                let worker =
                    Worker::spawn(PartSlot::new(slow()), std::thread::current(), || {}).unwrap();
                worker.dispatch();
                // Let the worker pick the round up, then stop while it runs.
                std::thread::sleep(Duration::from_millis(10));
                drop(worker);
            }
            let _ = done_tx.send(());
        });
        // A bound on a hang, not a speed requirement: five rounds take ~0.3 s.
        assert!(
            done_rx.recv_timeout(Duration::from_secs(30)).is_ok(),
            "dropping a worker mid-round hung (its thread missed the exit)"
        );
    }
}

//! Serve a simulated serial device on a pseudo-terminal, with real wire timing.
//!
//! [`PtySim::spawn`] creates a pty pair, keeps the master side and runs a [`SimDevice`] on a
//! dedicated thread. Any client opens [`PtySim::port`] (`/dev/pts/N`) like a real adapter: our
//! [`crate::transport::SerialTransport`], pyserial, `scservo_sdk`, pydamiao, lerobot.
//!
//! A pty moves bytes instantly and ignores the baud rate, so the runtime adds the time real
//! hardware would take ([`WireTiming`]):
//! - a request chunk of `n` bytes reaches the device `n` byte-times after it was read (after the
//!   previous chunk finished, the wire being serial);
//! - every reply waits the gap the device asks for, then occupies the wire for its own length;
//!   on a half-duplex bus (Feetech TTL) requests and replies share one wire;
//! - each reply then waits the optional USB hop latency before the client can read it.
//!
//! Wire faults are injected at run time through a cloneable [`WireFaults`] handle: drop the
//! next N replies, corrupt them, prepend garbage, add latency, or unplug (close the pty so the
//! client sees EIO / hang-up, like a pulled USB cable). Dropping the [`PtySim`] stops the thread.
//!
//! # Writing a device
//!
//! ```
//! use std::time::{Duration, Instant};
//! use openk_core::sim::pty::{PtySim, Replies, SimDevice, WireTiming};
//!
//! /// Echoes every byte back after a 50 µs turnaround.
//! struct Echo;
//!
//! impl SimDevice for Echo {
//!     fn on_receive(&mut self, bytes: &[u8], _now: Instant, replies: &mut Replies) {
//!         replies.send(Duration::from_micros(50), bytes);
//!     }
//! }
//!
//! let sim = PtySim::spawn(Echo, WireTiming::uart(1_000_000)).unwrap();
//! let path: &str = sim.port(); // open this with any serial client
//! # let _ = path;
//! ```
//!
//! The device is shared with the caller behind a mutex ([`PtySim::with_device`]) so tests and
//! bindings can inspect or change its state while it runs. Keep `on_receive` short: it runs
//! under that lock on the timing thread.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

use super::SimError;

/// A simulated device behind a pty. Called on the simulator thread only.
///
/// Time is passed in explicitly: `now` is the moment the bytes finished arriving on the
/// simulated wire, which can be slightly later than the wall clock at the call. Devices should
/// advance their physics to `now` (lazily, on each call) rather than keep their own clock.
pub trait SimDevice: Send + 'static {
    /// Bytes received from the client, as one chunk per client write (a chunk may hold part of
    /// a packet, or several). Schedule answers with [`Replies::send`].
    fn on_receive(&mut self, bytes: &[u8], now: Instant, replies: &mut Replies);

    /// When the device next wants [`SimDevice::on_wakeup`] without any input (e.g. a periodic
    /// frame). `None` (the default) = only input drives it.
    fn next_wakeup(&self) -> Option<Instant> {
        None
    }

    /// Called at (or just after) the instant [`SimDevice::next_wakeup`] returned.
    fn on_wakeup(&mut self, _now: Instant, _replies: &mut Replies) {}

    /// The last client closed the port: drop half-received input. Another client may open it.
    fn on_client_gone(&mut self) {}
}

/// Outgoing replies collected during one device call.
#[derive(Default)]
pub struct Replies {
    queued: Vec<(Duration, Vec<u8>)>,
}

impl Replies {
    /// Queues `bytes` to be sent `gap` after the wire goes quiet: after the request that
    /// triggered this call, or after the previous reply queued in the same call. So a bus of
    /// servos answering a sync read in turn each pass their own return delay as `gap`.
    pub fn send(&mut self, gap: Duration, bytes: &[u8]) {
        self.queued.push((gap, bytes.to_vec()));
    }

    /// Number of replies queued so far in this call.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Takes the queued `(gap, bytes)` replies out: for unit-testing a device without a pty.
    pub fn take(&mut self) -> Vec<(Duration, Vec<u8>)> {
        std::mem::take(&mut self.queued)
    }

    /// True if nothing has been queued in this call.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

/// How long bytes take on the simulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTiming {
    /// Line rate in bits per second; 0 = bytes take no wire time (e.g. a USB CDC device, which
    /// then paces its replies through the gaps it asks for).
    pub baud: u32,
    /// Bits on the wire per byte: 10 for 8N1.
    pub bits_per_byte: u32,
    /// Requests and replies share one wire (half-duplex TTL bus) instead of two.
    pub half_duplex: bool,
    /// Added to every reply before the client can read it: the USB-serial bridge's hop.
    pub usb_latency: Duration,
}

impl WireTiming {
    /// A half-duplex 8N1 UART at `baud`, with no USB hop.
    pub fn uart(baud: u32) -> Self {
        WireTiming {
            baud,
            bits_per_byte: 10,
            half_duplex: true,
            usb_latency: Duration::ZERO,
        }
    }

    /// Bytes take no wire time: replies arrive after the gaps the device asks for only.
    pub fn instant() -> Self {
        WireTiming {
            baud: 0,
            bits_per_byte: 10,
            half_duplex: false,
            usb_latency: Duration::ZERO,
        }
    }

    /// Same timing with a USB hop latency added to each reply.
    pub fn with_usb_latency(mut self, latency: Duration) -> Self {
        self.usb_latency = latency;
        self
    }

    /// Wire time of `n` bytes.
    pub fn wire_time(&self, n: usize) -> Duration {
        if self.baud == 0 {
            return Duration::ZERO;
        }
        let bits = n as u64 * u64::from(self.bits_per_byte);
        Duration::from_nanos(bits.saturating_mul(1_000_000_000) / u64::from(self.baud))
    }
}

/// How [`WireFaults::corrupt_replies`] damages a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Invert the last byte (the checksum of a Feetech packet, the tail of a DAMIAO frame).
    LastByte,
    /// Invert the byte at this index (ignored if the reply is shorter).
    Byte(usize),
    /// Send only the first `n` bytes.
    Truncate(usize),
}

/// Counters of what crossed the simulated wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Chunks handed to the device (roughly: client writes).
    pub chunks_received: u64,
    pub bytes_received: u64,
    pub replies_sent: u64,
    pub bytes_sent: u64,
    /// Replies swallowed by [`WireFaults::drop_replies`].
    pub replies_dropped: u64,
    /// Replies damaged by [`WireFaults::corrupt_replies`].
    pub replies_corrupted: u64,
}

struct Shared {
    stop: AtomicBool,
    unplug: AtomicBool,
    unplugged: AtomicBool,
    drop_next: AtomicU32,
    corrupt_next: AtomicU32,
    corruption: Mutex<Corruption>,
    extra_latency_ns: AtomicU64,
    garbage: Mutex<Vec<u8>>,
    has_garbage: AtomicBool,
    chunks_received: AtomicU64,
    bytes_received: AtomicU64,
    replies_sent: AtomicU64,
    bytes_sent: AtomicU64,
    replies_dropped: AtomicU64,
    replies_corrupted: AtomicU64,
    wake: WakePipe,
}

impl Shared {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Run-time wire fault injection for one [`PtySim`]. Cheap to clone; every clone controls the
/// same simulator. Faults apply to replies queued after the call.
#[derive(Clone)]
pub struct WireFaults {
    shared: Arc<Shared>,
}

impl WireFaults {
    /// The next `n` replies are never sent (the device "did not answer").
    pub fn drop_replies(&self, n: u32) {
        self.shared.drop_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` replies are damaged as `how` says.
    pub fn corrupt_replies(&self, n: u32, how: Corruption) {
        *lock(&self.shared.corruption) = how;
        self.shared.corrupt_next.store(n, Ordering::SeqCst);
    }

    /// Every reply is delayed by `extra` on top of the wire timing (ZERO to clear).
    pub fn set_extra_latency(&self, extra: Duration) {
        let ns = u64::try_from(extra.as_nanos()).unwrap_or(u64::MAX);
        self.shared.extra_latency_ns.store(ns, Ordering::SeqCst);
    }

    /// `bytes` of line noise are sent just before the next reply.
    pub fn inject_garbage(&self, bytes: &[u8]) {
        lock(&self.shared.garbage).extend_from_slice(bytes);
        self.shared.has_garbage.store(true, Ordering::SeqCst);
    }

    /// Closes the pty as a pulled cable would: clients see EIO / hang-up and the port path
    /// disappears. Irreversible for this simulator. Returns once the pty is closed (or after
    /// two seconds if the simulator thread is stuck).
    pub fn unplug(&self) {
        self.shared.unplug.store(true, Ordering::SeqCst);
        self.shared.wake.wake();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.is_unplugged() && !self.shared.stop.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                log::warn!("simulator thread did not close its pty within 2 s of unplug");
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// True once the simulator thread has closed the pty after [`WireFaults::unplug`].
    pub fn is_unplugged(&self) -> bool {
        self.shared.unplugged.load(Ordering::SeqCst)
    }

    /// Cancels pending drops, corruptions, garbage and extra latency (not an unplug).
    pub fn clear(&self) {
        self.shared.drop_next.store(0, Ordering::SeqCst);
        self.shared.corrupt_next.store(0, Ordering::SeqCst);
        self.shared.extra_latency_ns.store(0, Ordering::SeqCst);
        lock(&self.shared.garbage).clear();
        self.shared.has_garbage.store(false, Ordering::SeqCst);
    }

    /// Counters of traffic so far.
    pub fn stats(&self) -> SimStats {
        let s = &self.shared;
        SimStats {
            chunks_received: s.chunks_received.load(Ordering::Relaxed),
            bytes_received: s.bytes_received.load(Ordering::Relaxed),
            replies_sent: s.replies_sent.load(Ordering::Relaxed),
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            replies_dropped: s.replies_dropped.load(Ordering::Relaxed),
            replies_corrupted: s.replies_corrupted.load(Ordering::Relaxed),
        }
    }
}

/// A device served on a pty by its own thread. Stops (and closes the pty) on drop.
pub struct PtySim<D: SimDevice> {
    device: Arc<Mutex<D>>,
    shared: Arc<Shared>,
    port: String,
    timing: WireTiming,
    thread: Option<JoinHandle<()>>,
}

impl<D: SimDevice> PtySim<D> {
    /// Creates the pty pair and starts serving `device` with `timing`.
    pub fn spawn(device: D, timing: WireTiming) -> Result<Self, SimError> {
        let (master, slave) = TTYPort::pair().map_err(|e| SimError::Pty {
            source: io::Error::from(e),
        })?;
        let port = slave.name().ok_or_else(|| SimError::Pty {
            source: io::Error::other("pty slave has no name"),
        })?;
        // Closed here: the client opens the slave by path. Until one does, the master sees a
        // hang-up, which the loop treats as "no client yet".
        drop(slave);
        set_nonblocking(master.as_raw_fd()).map_err(|source| SimError::Pty { source })?;

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            unplug: AtomicBool::new(false),
            unplugged: AtomicBool::new(false),
            drop_next: AtomicU32::new(0),
            corrupt_next: AtomicU32::new(0),
            corruption: Mutex::new(Corruption::LastByte),
            extra_latency_ns: AtomicU64::new(0),
            garbage: Mutex::new(Vec::new()),
            has_garbage: AtomicBool::new(false),
            chunks_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            replies_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            replies_dropped: AtomicU64::new(0),
            replies_corrupted: AtomicU64::new(0),
            wake: WakePipe::new().map_err(|source| SimError::Pty { source })?,
        });
        let device = Arc::new(Mutex::new(device));
        let runner = Runner {
            master: Some(master),
            device: Arc::clone(&device),
            shared: Arc::clone(&shared),
            timing,
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            rx_wire_free: Instant::now(),
            tx_wire_free: Instant::now(),
            client_gone: true,
            replies: Replies::default(),
        };
        let thread = std::thread::Builder::new()
            .name("openk-sim-pty".into())
            .spawn(move || runner.run())
            .map_err(|source| SimError::Thread { source })?;
        Ok(PtySim {
            device,
            shared,
            port,
            timing,
            thread: Some(thread),
        })
    }

    /// Path of the pty slave (`/dev/pts/N`) for clients to open.
    pub fn port(&self) -> &str {
        &self.port
    }

    /// The wire timing this simulator applies.
    pub fn timing(&self) -> WireTiming {
        self.timing
    }

    /// A handle to inject wire faults at run time.
    pub fn faults(&self) -> WireFaults {
        WireFaults {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Counters of traffic so far.
    pub fn stats(&self) -> SimStats {
        self.faults().stats()
    }

    /// Runs `f` on the device under its lock (the sim thread waits meanwhile).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        f(&mut lock(&self.device))
    }

    /// Shared handle to the device, for callers that outlive a borrow of the simulator.
    pub fn device(&self) -> Arc<Mutex<D>> {
        Arc::clone(&self.device)
    }

    /// Stops the thread and closes the pty (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("simulator thread for {} panicked", self.port);
            }
        }
    }
}

impl<D: SimDevice> Drop for PtySim<D> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Pending {
    at: Instant,
    bytes: Vec<u8>,
}

struct Runner<D: SimDevice> {
    master: Option<TTYPort>,
    device: Arc<Mutex<D>>,
    shared: Arc<Shared>,
    timing: WireTiming,
    /// Received chunks waiting for their wire time to elapse.
    rx: VecDeque<Pending>,
    /// Replies waiting for their delivery time.
    tx: VecDeque<Pending>,
    rx_wire_free: Instant,
    tx_wire_free: Instant,
    client_gone: bool,
    replies: Replies,
}

/// While no client has the port open, check for one this often.
const NO_CLIENT_POLL: Duration = Duration::from_micros(500);

/// Simulator threads' SCHED_FIFO priority: above the control loop's (80). A simulator stands
/// for a device with its own MCU, whose replies the host's load never delays: a descheduled
/// simulator thread would show up as bus timeouts and loop jitter that real hardware does not
/// have, whatever the loop's own scheduling. Where FIFO is refused, simulators keep normal
/// scheduling.
pub const SIM_FIFO_PRIORITY: i32 = 85;

impl<D: SimDevice> Runner<D> {
    fn run(mut self) {
        // Default timer slack (50 µs) would blur the ~10 µs byte times we pace.
        // SAFETY: prctl with PR_SET_TIMERSLACK only affects this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let mut buf = [0u8; 4096];
        if let Err(reason) = crate::control::rt::set_fifo(SIM_FIFO_PRIORITY) {
            log::debug!("simulator thread keeps normal scheduling: {reason}");
        }
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return;
            }
            if self.shared.unplug.load(Ordering::SeqCst) {
                self.master = None; // closes the pty master
                self.shared.unplugged.store(true, Ordering::SeqCst);
                while !self.shared.stop.load(Ordering::SeqCst) {
                    self.shared.wake.wait(None);
                }
                return;
            }
            let now = Instant::now();
            self.deliver_rx(now);
            self.device_wakeup(now);
            self.deliver_tx(now);

            let next = [
                self.rx.front().map(|p| p.at),
                self.tx.front().map(|p| p.at),
                lock(&self.device).next_wakeup(),
            ]
            .into_iter()
            .flatten()
            .min();
            let mut timeout = next.map(|t| t.saturating_duration_since(Instant::now()));
            if self.client_gone {
                timeout = Some(timeout.map_or(NO_CLIENT_POLL, |t| t.min(NO_CLIENT_POLL)));
            }
            self.wait_and_read(timeout, &mut buf);
        }
    }

    fn master_fd(&self) -> Option<RawFd> {
        self.master.as_ref().map(|m| m.as_raw_fd())
    }

    /// Waits for input, a wake-up or the timeout; reads what arrived.
    fn wait_and_read(&mut self, timeout: Option<Duration>, buf: &mut [u8]) {
        let Some(fd) = self.master_fd() else {
            self.shared.wake.wait(timeout);
            return;
        };
        let mut fds = [
            libc::pollfd {
                fd: self.shared.wake.read_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = timeout.map(to_timespec);
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: two valid pollfds; `ts_ptr` is null or points at a live timespec.
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
        if r <= 0 {
            return;
        }
        let woken = fds[0].revents != 0;
        if woken {
            self.shared.wake.drain();
        }
        let revents = fds[1].revents;
        if revents & libc::POLLIN != 0 {
            // SAFETY: `fd` is the open master; `buf` is writable for its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let chunk = buf.get(..n as usize).unwrap_or(&[]);
                self.on_chunk(chunk);
                return;
            }
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                return;
            }
            self.set_client_gone();
        } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            self.set_client_gone();
            // A hang-up is level-triggered: without a client, poll returns at once. Nap on the
            // wake pipe instead (bounded, so a new client is noticed) unless a wake-up just
            // arrived, which the caller must see.
            if !woken {
                let nap = timeout.map_or(NO_CLIENT_POLL, |t| t.min(NO_CLIENT_POLL));
                self.shared.wake.wait(Some(nap));
            }
        }
    }

    fn on_chunk(&mut self, chunk: &[u8]) {
        self.client_gone = false;
        let now = Instant::now();
        let start = now.max(self.rx_wire_free);
        let end = start + self.timing.wire_time(chunk.len());
        self.rx_wire_free = end;
        if self.timing.half_duplex {
            self.tx_wire_free = self.tx_wire_free.max(end);
        }
        Shared::bump(&self.shared.chunks_received, 1);
        Shared::bump(&self.shared.bytes_received, chunk.len() as u64);
        self.rx.push_back(Pending {
            at: end,
            bytes: chunk.to_vec(),
        });
    }

    fn set_client_gone(&mut self) {
        if self.client_gone {
            return;
        }
        self.client_gone = true;
        self.rx.clear();
        self.tx.clear();
        lock(&self.device).on_client_gone();
    }

    fn deliver_rx(&mut self, now: Instant) {
        while self.rx.front().is_some_and(|p| p.at <= now) {
            let Some(chunk) = self.rx.pop_front() else {
                break;
            };
            let mut replies = std::mem::take(&mut self.replies);
            lock(&self.device).on_receive(&chunk.bytes, chunk.at, &mut replies);
            self.schedule(chunk.at, &mut replies);
            self.replies = replies;
        }
    }

    fn device_wakeup(&mut self, now: Instant) {
        let mut device = lock(&self.device);
        if device.next_wakeup().is_some_and(|t| t <= now) {
            let mut replies = std::mem::take(&mut self.replies);
            device.on_wakeup(now, &mut replies);
            drop(device);
            self.schedule(now, &mut replies);
            self.replies = replies;
        }
    }

    /// Turns queued replies into timed deliveries, applying wire faults.
    fn schedule(&mut self, now: Instant, replies: &mut Replies) {
        for (gap, mut bytes) in replies.queued.drain(..) {
            if take_one(&self.shared.drop_next) {
                Shared::bump(&self.shared.replies_dropped, 1);
                continue;
            }
            if take_one(&self.shared.corrupt_next) {
                corrupt(&mut bytes, *lock(&self.shared.corruption));
                Shared::bump(&self.shared.replies_corrupted, 1);
            }
            if self.shared.has_garbage.swap(false, Ordering::SeqCst) {
                let mut noisy = std::mem::take(&mut *lock(&self.shared.garbage));
                noisy.extend_from_slice(&bytes);
                bytes = noisy;
            }
            let start = now.max(self.tx_wire_free) + gap;
            let end = start + self.timing.wire_time(bytes.len());
            self.tx_wire_free = end;
            if self.timing.half_duplex {
                self.rx_wire_free = self.rx_wire_free.max(end);
            }
            let extra = Duration::from_nanos(self.shared.extra_latency_ns.load(Ordering::SeqCst));
            let at = end + self.timing.usb_latency + extra;
            // Keep deliveries ordered even if the extra latency shrank meanwhile.
            let at = self.tx.back().map_or(at, |last| at.max(last.at));
            self.tx.push_back(Pending { at, bytes });
        }
    }

    fn deliver_tx(&mut self, now: Instant) {
        let Some(fd) = self.master_fd() else {
            self.tx.clear();
            return;
        };
        while self.tx.front().is_some_and(|p| p.at <= now) {
            let Some(reply) = self.tx.pop_front() else {
                break;
            };
            // Counted before the write so a client that has read the reply sees it counted.
            Shared::bump(&self.shared.replies_sent, 1);
            let mut rest: &[u8] = &reply.bytes;
            while !rest.is_empty() {
                // SAFETY: `fd` is the open master; `rest` is valid for its length.
                let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
                if n > 0 {
                    rest = rest.get(n as usize..).unwrap_or(&[]);
                    continue;
                }
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // EAGAIN: the client stopped reading and the pty buffer is full; a real
                // adapter would overflow too. EIO: no client. Either way the bytes are lost.
                log::debug!("sim pty: reply lost: {err}");
                break;
            }
            Shared::bump(
                &self.shared.bytes_sent,
                (reply.bytes.len() - rest.len()) as u64,
            );
        }
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn corrupt(bytes: &mut Vec<u8>, how: Corruption) {
    match how {
        Corruption::LastByte => {
            if let Some(b) = bytes.last_mut() {
                *b = !*b;
            }
        }
        Corruption::Byte(i) => {
            if let Some(b) = bytes.get_mut(i) {
                *b = !*b;
            }
        }
        Corruption::Truncate(n) => bytes.truncate(n),
    }
}

/// Poisoning only means another thread panicked mid-update; the simulator state is still the
/// best we have, so keep serving rather than propagate the panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl flag manipulation on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A self-pipe that lets other threads interrupt the simulator's poll (stop, unplug).
struct WakePipe {
    read_fd: RawFd,
    write_fd: RawFd,
}

impl WakePipe {
    fn new() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(WakePipe {
            read_fd: fds[0],
            write_fd: fds[1],
        })
    }

    fn wake(&self) {
        let byte = 1u8;
        // SAFETY: writing one byte from a live local; a full pipe (EAGAIN) is already awake.
        unsafe { libc::write(self.write_fd, (&byte as *const u8).cast(), 1) };
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking reads into a local buffer until the pipe is empty.
        while unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// Sleeps until woken or `timeout` passes (forever if `None`).
    fn wait(&self, timeout: Option<Duration>) {
        let mut pfd = libc::pollfd {
            fd: self.read_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = timeout.map(to_timespec);
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: one valid pollfd; `ts_ptr` is null or points at a live timespec.
        let r = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
        if r > 0 {
            self.drain();
        }
    }
}

impl Drop for WakePipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors were created by pipe2 and are closed exactly once.
        unsafe {
            libc::close(self.read_fd);
            libc::close(self.write_fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::SerialTransport;

    struct Echo {
        seen: Vec<u8>,
        gone: u32,
    }

    impl SimDevice for Echo {
        fn on_receive(&mut self, bytes: &[u8], _now: Instant, replies: &mut Replies) {
            self.seen.extend_from_slice(bytes);
            replies.send(Duration::from_micros(20), bytes);
        }
        fn on_client_gone(&mut self) {
            self.gone += 1;
        }
    }

    fn echo() -> Echo {
        Echo {
            seen: Vec::new(),
            gone: 0,
        }
    }

    fn read_n(t: &mut SerialTransport, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while out.len() < n {
            let got = t.read_some(&mut buf, deadline).unwrap();
            if got == 0 {
                break;
            }
            out.extend_from_slice(&buf[..got]);
        }
        out
    }

    #[test]
    fn echo_round_trip_through_a_real_client() {
        let sim = PtySim::spawn(echo(), WireTiming::uart(1_000_000)).unwrap();
        let mut t = SerialTransport::open(sim.port(), 1_000_000).unwrap();
        t.write_all(b"hello").unwrap();
        assert_eq!(read_n(&mut t, 5, Duration::from_secs(2)), b"hello");
        assert_eq!(sim.with_device(|d| d.seen.clone()), b"hello");
        let stats = sim.stats();
        assert_eq!(stats.bytes_received, 5);
        assert_eq!(stats.replies_sent, 1);
    }

    #[test]
    fn reply_waits_for_wire_time() {
        // 9600 baud: 10 bytes out + 10 back ≈ 20.8 ms of wire time. The lower bound is
        // physics, not a performance assertion: a reply cannot arrive before it was sent.
        let sim = PtySim::spawn(echo(), WireTiming::uart(9600)).unwrap();
        let mut t = SerialTransport::open(sim.port(), 9600).unwrap();
        let t0 = Instant::now();
        t.write_all(&[0x55; 10]).unwrap();
        assert_eq!(read_n(&mut t, 10, Duration::from_secs(2)).len(), 10);
        assert!(t0.elapsed() >= sim.timing().wire_time(20));
    }

    #[test]
    fn drop_corrupt_garbage_and_latency_faults() {
        let sim = PtySim::spawn(echo(), WireTiming::uart(1_000_000)).unwrap();
        let faults = sim.faults();
        let mut t = SerialTransport::open(sim.port(), 1_000_000).unwrap();

        faults.drop_replies(1);
        t.write_all(&[1, 2, 3]).unwrap();
        assert!(read_n(&mut t, 3, Duration::from_millis(50)).is_empty());
        t.write_all(&[4, 5, 6]).unwrap();
        assert_eq!(read_n(&mut t, 3, Duration::from_secs(2)), [4, 5, 6]);

        faults.corrupt_replies(1, Corruption::LastByte);
        t.write_all(&[7, 8]).unwrap();
        assert_eq!(read_n(&mut t, 2, Duration::from_secs(2)), [7, !8u8]);

        faults.inject_garbage(&[0xEE, 0xEE]);
        t.write_all(&[9]).unwrap();
        assert_eq!(read_n(&mut t, 3, Duration::from_secs(2)), [0xEE, 0xEE, 9]);

        faults.set_extra_latency(Duration::from_millis(30));
        let t0 = Instant::now();
        t.write_all(&[10]).unwrap();
        assert_eq!(read_n(&mut t, 1, Duration::from_secs(2)), [10]);
        assert!(t0.elapsed() >= Duration::from_millis(30));

        let stats = faults.stats();
        assert_eq!(stats.replies_dropped, 1);
        assert_eq!(stats.replies_corrupted, 1);
    }

    #[test]
    fn unplug_is_seen_as_disconnect_and_reconnect_works_before_it() {
        let sim = PtySim::spawn(echo(), WireTiming::uart(1_000_000)).unwrap();
        {
            let mut t = SerialTransport::open(sim.port(), 1_000_000).unwrap();
            t.write_all(&[1]).unwrap();
            assert_eq!(read_n(&mut t, 1, Duration::from_secs(2)), [1]);
        }
        // The simulator notices the client left...
        crate::control::testing::wait_until(
            "the simulator saw the client leave",
            crate::control::testing::PATIENCE,
            || sim.with_device(|d| d.gone) > 0,
        );
        assert_eq!(sim.with_device(|d| d.gone), 1);
        // ...and serves a second client.
        let mut t = SerialTransport::open(sim.port(), 1_000_000).unwrap();
        t.write_all(&[2]).unwrap();
        assert_eq!(read_n(&mut t, 1, Duration::from_secs(2)), [2]);

        sim.faults().unplug();
        let mut buf = [0u8; 8];
        let err = t
            .read_some(&mut buf, Instant::now() + Duration::from_secs(2))
            .unwrap_err();
        assert!(err.is_disconnect(), "{err}");
        assert!(sim.faults().is_unplugged());
        assert!(SerialTransport::open(sim.port(), 1_000_000).is_err());
    }
}

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use serialport::TTYPort;

/// Errors of the serial transport. Every message names the port and says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "serial port {port} does not exist: check the cable and power, then run \
         `openk find-port` to list the ports on this machine"
    )]
    NotFound { port: String },

    #[error(
        "permission denied opening {port}: add your user to the `dialout` group \
         (`sudo usermod -aG dialout $USER`, then log out and in again)"
    )]
    PermissionDenied { port: String },

    #[error(
        "serial port {port} is busy: another program (another openk, a serial monitor, \
         ModemManager) has it open; close that program and retry"
    )]
    Busy { port: String },

    #[error(
        "serial port {port} disconnected (adapter unplugged or powered off): reconnect it, \
         run `openk find-port`, and open the port again"
    )]
    Disconnected { port: String },

    #[error("serial port {port}: {what} timed out after {waited:?}; is the device powered?")]
    WriteTimeout {
        port: String,
        what: &'static str,
        waited: Duration,
    },

    #[error("serial port {port}: {what} failed: {source}")]
    Io {
        port: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl crate::error::Classified for TransportError {
    /// Every transport fault is the port's, a write the adapter would not take included: the
    /// motors behind it were never reached.
    fn fault_kind(&self) -> crate::error::FaultKind {
        crate::error::FaultKind::Port
    }
}

impl TransportError {
    /// True when the port is gone and must be reopened (unplug, closed simulator).
    pub fn is_disconnect(&self) -> bool {
        matches!(self, TransportError::Disconnected { .. })
    }
}

/// A writer that cannot make progress for this long is treated as stuck (a real UART drains
/// kilobytes per millisecond at 1 Mbaud; a pty whose reader is gone never drains).
const WRITE_STALL_LIMIT: Duration = Duration::from_millis(500);

/// An open serial port (tty or pty) in raw 8N1 mode.
///
/// Reads are deadline-based: [`SerialTransport::read_some`] returns whatever bytes have arrived,
/// as soon as any have, and `Ok(0)` once the deadline passes. Protocol layers loop on it while
/// parsing, which keeps a transaction's total wait bounded by one deadline (the `serialport`
/// crate's own `read` applies its timeout per call instead).
pub struct SerialTransport {
    // Owns the descriptor (closed on drop, with the crate's lock on the port); I/O goes
    // through `fd` directly.
    _port: TTYPort,
    fd: RawFd,
    path: String,
    baud: u32,
}

impl std::fmt::Debug for SerialTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialTransport")
            .field("path", &self.path)
            .field("baud", &self.baud)
            .finish()
    }
}

impl SerialTransport {
    /// Opens `path` at `baud` (8N1, no flow control), exclusively.
    ///
    /// Also asks the driver for low-latency mode (ASYNC_LOW_LATENCY); ports that do not support
    /// it (ptys, CDC-ACM) answer ENOTTY/EINVAL, which is "not applicable", not an error.
    pub fn open(path: &str, baud: u32) -> Result<Self, TransportError> {
        if !Path::new(path).exists() {
            return Err(TransportError::NotFound {
                port: path.to_owned(),
            });
        }
        let port = serialport::new(path, baud)
            .timeout(Duration::ZERO)
            .open_native()
            .map_err(|e| map_open_error(path, e))?;
        let fd = port.as_raw_fd();
        let mut transport = SerialTransport {
            _port: port,
            fd,
            path: path.to_owned(),
            baud,
        };
        transport.request_low_latency();
        warn_on_slow_latency_timer(path);
        // Bytes that arrived before our settings applied may be garbled.
        transport.clear_input()?;
        Ok(transport)
    }

    /// The path this port was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The baud rate this port was opened with.
    pub fn baud(&self) -> u32 {
        self.baud
    }

    /// Time one byte takes on the wire at this baud rate (8N1 = 10 bit times).
    pub fn byte_time(&self) -> Duration {
        Duration::from_nanos(10_000_000_000 / u64::from(self.baud.max(1)))
    }

    /// Writes every byte of `bytes`, waiting for room in the driver's buffer if needed.
    pub fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), TransportError> {
        let mut stalled_since: Option<Instant> = None;
        while !bytes.is_empty() {
            // SAFETY: `fd` is open for the lifetime of `self._port`; the buffer is valid for
            // `bytes.len()` bytes.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n > 0 {
                bytes = bytes.get(n as usize..).unwrap_or(&[]);
                stalled_since = None;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > WRITE_STALL_LIMIT {
                        return Err(TransportError::WriteTimeout {
                            port: self.path.clone(),
                            what: "write",
                            waited: WRITE_STALL_LIMIT,
                        });
                    }
                    self.poll(libc::POLLOUT, Some(Duration::from_millis(5)), "write")?;
                }
                _ => return Err(self.io_error("write", err)),
            }
        }
        Ok(())
    }

    /// Returns the bytes that arrive before `deadline`: at least one as soon as any arrive, or
    /// `Ok(0)` once the deadline has passed with nothing received. A deadline in the past still
    /// collects what is already buffered.
    pub fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, TransportError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !self.poll(libc::POLLIN, Some(remaining), "read")? {
                return Ok(0);
            }
            // SAFETY: `fd` is open; `buf` is valid and writable for `buf.len()` bytes.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Ok(n as usize);
            }
            if n == 0 {
                // End of file on a tty means the other side hung up.
                return Err(self.disconnected());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return Err(self.io_error("read", err)),
            }
        }
    }

    /// Drops every byte received but not yet read (stale replies after a timeout).
    pub fn clear_input(&mut self) -> Result<(), TransportError> {
        // Called directly (not through the crate) to keep the errno: EIO = unplugged.
        // SAFETY: `fd` is open; TCIFLUSH only discards queued input.
        if unsafe { libc::tcflush(self.fd, libc::TCIFLUSH) } != 0 {
            return Err(self.io_error("clear input", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits for `events` on the port. Ok(true) = ready, Ok(false) = timed out.
    fn poll(
        &self,
        events: libc::c_short,
        timeout: Option<Duration>,
        what: &'static str,
    ) -> Result<bool, TransportError> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        loop {
            // SAFETY: one valid pollfd; `ts_ptr` is null or points at a live timespec.
            let r = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
            if r < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(self.io_error(what, err));
            }
            if r == 0 {
                return Ok(false);
            }
            // Data still buffered is delivered even after a hang-up; the next read reports it.
            if pfd.revents & events != 0 {
                return Ok(true);
            }
            if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(self.disconnected());
            }
            return Ok(true);
        }
    }

    fn disconnected(&self) -> TransportError {
        TransportError::Disconnected {
            port: self.path.clone(),
        }
    }

    fn io_error(&self, what: &'static str, source: io::Error) -> TransportError {
        match source.raw_os_error() {
            Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ENODEV) | Some(libc::EPIPE) => {
                self.disconnected()
            }
            _ if source.kind() == io::ErrorKind::BrokenPipe => self.disconnected(),
            _ => TransportError::Io {
                port: self.path.clone(),
                what,
                source,
            },
        }
    }

    /// Best effort: real USB-serial drivers (ftdi_sio) then push received bytes to us without
    /// waiting for their 16 ms latency timer.
    fn request_low_latency(&mut self) {
        const ASYNC_LOW_LATENCY: libc::c_int = 1 << 13;
        let mut info = SerialStruct::default();
        // SAFETY: TIOCGSERIAL fills a `struct serial_struct`, which `SerialStruct` mirrors.
        let r = unsafe { libc::ioctl(self.fd, libc::TIOCGSERIAL, &mut info as *mut SerialStruct) };
        if r != 0 {
            let err = io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)) {
                log::debug!("{}: low-latency mode not available: {err}", self.path);
            }
            return;
        }
        if info.flags & ASYNC_LOW_LATENCY != 0 {
            return;
        }
        info.flags |= ASYNC_LOW_LATENCY;
        // SAFETY: as above, with the struct the driver just filled in.
        let r = unsafe { libc::ioctl(self.fd, libc::TIOCSSERIAL, &info as *const SerialStruct) };
        if r != 0 {
            log::debug!(
                "{}: could not set low-latency mode: {}",
                self.path,
                io::Error::last_os_error()
            );
        }
    }
}

impl Drop for SerialTransport {
    fn drop(&mut self) {
        // Lift TIOCEXCL so the next client (another process, a peer SDK) can open the port even
        // where the tty outlives us, as a pty slave does while its simulator runs.
        // SAFETY: `fd` is still open here; TIOCNXCL takes no argument.
        unsafe { libc::ioctl(self.fd, libc::TIOCNXCL) };
    }
}

/// Mirror of Linux `struct serial_struct` (linux/serial.h) for TIOCGSERIAL/TIOCSSERIAL.
#[repr(C)]
#[derive(Default)]
struct SerialStruct {
    kind: libc::c_int,
    line: libc::c_int,
    port: libc::c_uint,
    irq: libc::c_int,
    flags: libc::c_int,
    xmit_fifo_size: libc::c_int,
    custom_divisor: libc::c_int,
    baud_base: libc::c_int,
    close_delay: libc::c_ushort,
    io_type: libc::c_char,
    reserved_char: libc::c_char,
    hub6: libc::c_int,
    closing_wait: libc::c_ushort,
    closing_wait2: libc::c_ushort,
    iomem_base: usize,
    iomem_reg_shift: libc::c_ushort,
    port_high: libc::c_uint,
    iomap_base: libc::c_ulong,
}

/// FTDI adapters default to a 16 ms latency timer, which caps a request/response bus far
/// below the control rate. Warn once at open; openk cannot change it without root.
fn warn_on_slow_latency_timer(path: &str) {
    let Ok(real) = std::fs::canonicalize(path) else {
        return;
    };
    let Some(name) = real.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let sysfs = format!("/sys/bus/usb-serial/devices/{name}/latency_timer");
    if let Ok(text) = std::fs::read_to_string(&sysfs) {
        if let Ok(ms) = text.trim().parse::<u32>() {
            if ms > 1 {
                log::warn!(
                    "{path}: USB latency timer is {ms} ms; set it to 1 ms \
                     (`echo 1 | sudo tee {sysfs}`) or every reply waits up to {ms} ms"
                );
            }
        }
    }
}

fn map_open_error(path: &str, e: serialport::Error) -> TransportError {
    let port = path.to_owned();
    match e.kind() {
        serialport::ErrorKind::NoDevice => TransportError::Busy { port },
        serialport::ErrorKind::Io(io::ErrorKind::NotFound) => TransportError::NotFound { port },
        serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied) => {
            TransportError::PermissionDenied { port }
        }
        _ => TransportError::Io {
            port,
            what: "open",
            source: io::Error::from(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::SerialPort;

    #[test]
    fn missing_port_names_the_port_and_the_fix() {
        let err = SerialTransport::open("/dev/openk-no-such-port", 1_000_000).unwrap_err();
        assert!(matches!(err, TransportError::NotFound { .. }));
        let msg = err.to_string();
        assert!(msg.contains("/dev/openk-no-such-port"), "{msg}");
        assert!(msg.contains("openk find-port"), "{msg}");
    }

    #[test]
    fn pty_round_trip_and_deadline() {
        let (mut master, slave) = TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        let mut t = SerialTransport::open(&name, 1_000_000).unwrap();
        assert_eq!(t.path(), name);

        // Nothing sent: returns 0 at the deadline.
        let mut buf = [0u8; 16];
        let n = t
            .read_some(&mut buf, Instant::now() + Duration::from_millis(5))
            .unwrap();
        assert_eq!(n, 0);

        t.write_all(&[1, 2, 3]).unwrap();
        let mut got = [0u8; 3];
        io::Read::read_exact(&mut master, &mut got).unwrap();
        assert_eq!(got, [1, 2, 3]);

        io::Write::write_all(&mut master, &[9, 8]).unwrap();
        let n = t
            .read_some(&mut buf, Instant::now() + Duration::from_secs(2))
            .unwrap();
        assert!(n >= 1);

        // Stale input is dropped.
        io::Write::write_all(&mut master, &[7; 4]).unwrap();
        // The pty hands written bytes over asynchronously: wait until they are queued.
        crate::control::testing::wait_until(
            "the stale bytes reached the port",
            crate::control::testing::PATIENCE,
            || slave.bytes_to_read().unwrap_or(0) >= 4,
        );
        t.clear_input().unwrap();
        let n = t
            .read_some(&mut buf, Instant::now() + Duration::from_millis(5))
            .unwrap();
        assert_eq!(n, 0);
        drop(slave);
    }

    #[test]
    fn closed_master_reads_as_disconnect() {
        let (master, slave) = TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        let mut t = SerialTransport::open(&name, 115_200).unwrap();
        drop(slave);
        drop(master);
        let mut buf = [0u8; 8];
        let err = t
            .read_some(&mut buf, Instant::now() + Duration::from_secs(2))
            .unwrap_err();
        assert!(err.is_disconnect(), "{err}");
        assert!(err.to_string().contains(&name));
    }
}

//! Serial ports with deadline-based reads.
//!
//! [`SerialTransport`] opens any Linux tty (USB-serial adapters, CDC-ACM devices and the
//! pseudo-terminals our simulators serve) through the `serialport` crate, which handles raw
//! mode, baud rate (termios2 for non-standard rates) and exclusive locking. The hot-path I/O
//! (poll + read/write) is done directly on the file descriptor so that every call gets the real
//! `errno`: that is how an unplugged adapter (EIO / hang-up) is told apart from a timeout.

mod serial;

pub use serial::{SerialTransport, TransportError};

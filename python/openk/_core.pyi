"""Type stubs for the native module `openk._core` (rust/py)."""

__version__: str

def now_ns() -> int:
    """Nanoseconds on CLOCK_MONOTONIC, the same clock as `time.monotonic_ns()`."""

# --- feetech (STS3215 codec, bus, simulator) ---

# --- damiao (DAMIAO USB-CAN codec, bus, simulator) ---

# --- control (arms, teleop loop, recording batches) ---

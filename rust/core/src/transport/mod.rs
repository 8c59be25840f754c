//! Serial ports and pseudo-terminals with deadline-based reads.

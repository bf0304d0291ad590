//! Connections between workers (filled by the transport work).

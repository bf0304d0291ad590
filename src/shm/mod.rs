//! Named shared-memory segments (filled by the ring work).

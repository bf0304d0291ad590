//! Wait strategies (filled by the ring work).

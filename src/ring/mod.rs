//! Lock-free SPSC byte ring (filled by the ring work).

//! rkyv TaskSpec messages (filled by the foundation work).

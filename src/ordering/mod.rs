//! Ray's sequence-number ordering (filled by the ordering work).

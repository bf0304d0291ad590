//! Ray-shaped IDs (filled by the foundation work).

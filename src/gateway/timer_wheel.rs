//! Hierarchical timer wheel (owned by the timer-wheel work).

//! Connection identity that stays safe to hold after the connection is gone.
//!
//! A `ConnId` packs the owning reactor, the slab key and a generation into one `u64`. Slab
//! keys are reused as soon as a connection closes; the generation is bumped on every reuse,
//! so a stale id held by the logic core is recognised and dropped by the reactor, never
//! delivered to whoever owns the slot now.

use std::fmt;

/// Bits of the generation counter. A slot has to be reused 2^24 times while an old id is
/// still held before a stale id could match again.
const GENERATION_BITS: u32 = 24;
const GENERATION_MASK: u32 = (1 << GENERATION_BITS) - 1;
/// Bits of the reactor index: at most 256 reactors per process.
const REACTOR_BITS: u32 = 8;
/// The largest number of reactors one gateway runs.
pub const MAX_REACTORS: usize = 1 << REACTOR_BITS;

/// Identifies one connection of one gateway process, including across slot reuse.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Packs the parts. `generation` is truncated to its 24 bits.
    pub fn new(reactor: usize, key: u32, generation: u32) -> ConnId {
        debug_assert!(reactor < MAX_REACTORS);
        let reactor = (reactor as u64) & ((1 << REACTOR_BITS) - 1);
        let generation = u64::from(generation & GENERATION_MASK);
        ConnId(reactor << 56 | generation << 32 | u64::from(key))
    }

    /// Index of the reactor thread that owns the connection.
    pub fn reactor(self) -> usize {
        (self.0 >> 56) as usize
    }

    /// The connection's key in its reactor's slab.
    pub fn key(self) -> usize {
        (self.0 as u32) as usize
    }

    /// The slot's generation when the connection was opened.
    pub fn generation(self) -> u32 {
        ((self.0 >> 32) as u32) & GENERATION_MASK
    }

    /// The packed form, for logs and for the logic core's maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from [`ConnId::as_u64`].
    pub fn from_u64(raw: u64) -> ConnId {
        ConnId(raw)
    }
}

/// The next generation for a slot, wrapping within the packed width.
pub(crate) fn next_generation(generation: u32) -> u32 {
    generation.wrapping_add(1) & GENERATION_MASK
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.reactor(), self.key(), self.generation())
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let id = ConnId::new(255, u32::MAX, GENERATION_MASK);
        assert_eq!(id.reactor(), 255);
        assert_eq!(id.key(), u32::MAX as usize);
        assert_eq!(id.generation(), GENERATION_MASK);
        assert_eq!(ConnId::from_u64(id.as_u64()), id);

        let id = ConnId::new(3, 17, 5);
        assert_eq!((id.reactor(), id.key(), id.generation()), (3, 17, 5));
    }

    #[test]
    fn generation_wraps_inside_its_bits() {
        assert_eq!(next_generation(GENERATION_MASK), 0);
        assert_eq!(next_generation(7), 8);
        let wrapped = ConnId::new(1, 2, next_generation(GENERATION_MASK));
        assert_eq!(
            wrapped.reactor(),
            1,
            "a wrapped generation must not spill into the reactor bits"
        );
    }

    #[test]
    fn reused_slot_gets_a_different_id() {
        let old = ConnId::new(0, 9, 41);
        let new = ConnId::new(0, 9, next_generation(41));
        assert_ne!(old, new);
        assert_eq!(old.key(), new.key());
    }
}

//! The wire form of a sync cursor (SYNC_LIST, SYNC_CONFIRM): the inbox's sequence number in
//! the low 44 bits and a tag of the inbox's user in the 19 above, so a cursor of another
//! user's inbox is told apart from this inbox's own even where its number lies within this
//! inbox's range (docs/protocol.md §9, "Bad cursors").
//!
//! Invariants: cursor 0 is every inbox's "from the acknowledged position" and carries no tag;
//! every other cursor's tag is 1..2^19 (never 0), so a cursor of the old kind (a bare sequence
//! number, given out before the tag) never passes as anyone's; within one inbox cursors grow
//! with the sequence, as a client may compare them; the top bit stays clear (an i64 in SQL).
//! The tag is a hash, not a secret: a cursor made up for another user's inbox is refused as
//! any made-up cursor is, except for one in 2^19 that passes the tag and then still must lie
//! within this user's own inbox; it can never read another inbox, which the store keys by the
//! asking user only.

/// Bits of the sequence: 17.6 trillion entries per inbox.
const SEQ_BITS: u32 = 44;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Tags are 1..=TAG_MAX (19 bits).
const TAG_MAX: u64 = (1 << (63 - SEQ_BITS)) - 1;

/// The tag of `user`'s inbox: FNV-1a of the name, folded into 1..=TAG_MAX. Stable across
/// processes, builds and nodes (no per-process hash seed), as cursors outlive connections.
fn tag(user: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % TAG_MAX + 1
}

/// The cursor a client gets for sequence `seq` of `user`'s inbox.
pub(super) fn encode(user: &str, seq: u64) -> u64 {
    if seq == 0 {
        return 0;
    }
    (tag(user) << SEQ_BITS) | (seq & SEQ_MASK)
}

/// The sequence a client's `cursor` stands for in `user`'s inbox, or `None` when it was not
/// given out for this inbox (another user's, or of the old kind).
pub(super) fn decode(user: &str, cursor: u64) -> Option<u64> {
    if cursor == 0 {
        return Some(0);
    }
    (cursor >> SEQ_BITS == tag(user)).then_some(cursor & SEQ_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_back_to_its_sequence_in_its_own_inbox_only() {
        for seq in [0, 1, 57, SEQ_MASK] {
            assert_eq!(decode("bob", encode("bob", seq)), Some(seq));
        }
        assert_eq!(encode("bob", 0), 0, "0 is everyone's start");
        assert_eq!(decode("alice", 0), Some(0));
        // Another user's cursor, within any range: refused.
        assert_eq!(decode("alice", encode("bob", 3)), None);
        // The old kind (a bare sequence number) and a msg_id where a cursor belongs.
        assert_eq!(decode("bob", 57), None);
        assert_eq!(decode("bob", 7_411_860_537_460_289_537), None);
        // Cursors grow with the sequence, and stay below 2^63.
        assert!(encode("bob", 58) > encode("bob", 57));
        assert!(encode("bob", SEQ_MASK) < 1 << 63);
        // The worked example of docs/protocol.md §12.4 (protocol/tests/doc_examples.rs).
        assert_eq!(encode("bob", 57), 0x661c_e000_0000_0039);
    }

    #[test]
    fn tags_are_never_zero_and_spread_over_users() {
        let tags: std::collections::HashSet<u64> =
            (0..10_000).map(|i| tag(&format!("user{i}"))).collect();
        assert!(!tags.contains(&0));
        assert!(tags.iter().all(|&t| t <= TAG_MAX));
        // 10,000 names in 2^19 tags: a few collide, most do not.
        assert!(tags.len() > 9_800, "{} distinct tags", tags.len());
    }
}

//! splitmix64: the load generator's one source of varied numbers (WebSocket keys and masks,
//! heartbeat phases, the pacer's gaps). Differing, repeatable from a seed; never secrets.

/// The next number of the sequence `state` is at; advances `state`.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
        let mut state = 0;
        assert_eq!(super::next(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(super::next(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }
}

//! Payload masking (RFC 6455 §5.3): byte `i` of a payload is XORed with `key[i % 4]`; applying
//! the mask twice restores the payload. [`apply_mask`] works a u64 word at a time in safe code;
//! [`apply_mask_bytewise`] is its reference twin, and the tests hold them equal on every length,
//! phase and alignment. `phase` lets a payload be (un)masked in pieces as it arrives.

/// XORs `buf` with `key`, starting at byte `phase` of the key: call it with `phase` equal to the
/// number of payload bytes before `buf` to (un)mask a payload piece by piece.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    let key = rotate_key(key, phase);
    let word_bytes = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ];
    // Native byte order both ways: XOR acts on bytes in place, whatever their order in the word.
    let word = u64::from_ne_bytes(word_bytes);
    // Blocks of four words give the optimiser a body worth vectorising; unaligned loads are fine.
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        for chunk in block.chunks_exact_mut(8) {
            xor_word(chunk, word);
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(8);
    for chunk in &mut words {
        xor_word(chunk, word);
    }
    // Whole words are a multiple of 4 bytes, so the tail starts at phase 0 of the rotated key.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The byte-at-a-time reference for [`apply_mask`]: same contract, obviously correct.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[((phase & 3) + i) & 3];
    }
}

/// The key as seen from byte `phase` of a payload.
fn rotate_key(key: [u8; 4], phase: usize) -> [u8; 4] {
    let mut rotated = key;
    rotated.rotate_left(phase & 3);
    rotated
}

fn xor_word(chunk: &mut [u8], word: u64) {
    if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
        *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_5_7_masked_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_whole() {
        let key = [1, 2, 3, 4];
        let original: Vec<u8> = (0..=255).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for cut in 0..original.len() {
            let mut pieces = original.clone();
            let (left, right) = pieces.split_at_mut(cut);
            apply_mask(left, key, 0);
            apply_mask(right, key, cut);
            assert_eq!(pieces, whole, "cut at {cut}");
        }
    }

    #[test]
    fn large_phase_does_not_overflow() {
        let mut a = [7u8; 11];
        let mut b = [7u8; 11];
        apply_mask(&mut a, [9, 8, 7, 6], usize::MAX);
        apply_mask_bytewise(&mut b, [9, 8, 7, 6], usize::MAX);
        assert_eq!(a, b);
        assert_eq!(a[0], 7 ^ 6, "usize::MAX is phase 3");
    }

    proptest! {
        #[test]
        fn word_and_byte_versions_agree_on_every_length_phase_and_offset(
            key in any::<[u8; 4]>(),
            data in prop::collection::vec(any::<u8>(), 108),
        ) {
            for offset in 0..8 {
                for len in 0..=100 {
                    for phase in 0..4 {
                        let mut fast = data.clone();
                        let mut slow = data.clone();
                        apply_mask(&mut fast[offset..offset + len], key, phase);
                        apply_mask_bytewise(&mut slow[offset..offset + len], key, phase);
                        prop_assert_eq!(&fast, &slow, "offset {} len {} phase {}", offset, len, phase);
                    }
                }
            }
        }
    }
}

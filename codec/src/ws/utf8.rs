//! Incremental UTF-8 validation for text messages that arrive in pieces (RFC 6455 §8.1).
//! Fed any split of a byte stream, it fails on the piece holding the first byte that no valid
//! UTF-8 text can continue with, not at the end of the message; it carries at most the 3 bytes
//! of an unfinished code point between pieces and never allocates. A failure is sticky.

/// Why a text stream is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Violation {
    /// A byte that no valid UTF-8 text can contain at that position.
    InvalidSequence,
    /// The text ended inside a multi-byte sequence.
    TruncatedSequence,
}

/// Validates a UTF-8 stream fed piece by piece. 4 bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The start of a code point cut by the end of the last piece (a valid prefix).
    pending: [u8; 3],
    /// How many bytes of `pending` are in use, or [`Utf8Validator::FAILED`].
    pending_len: u8,
}

impl Utf8Validator {
    const FAILED: u8 = u8::MAX;

    /// A validator at the start of a stream.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 3],
            pending_len: 0,
        }
    }

    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Utf8Violation> {
        if self.pending_len == Self::FAILED {
            return Err(Utf8Violation::InvalidSequence);
        }
        if self.pending_len > 0 {
            piece = self.complete_pending(piece)?;
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                // The piece ends inside a code point whose bytes so far are valid.
                None => {
                    let tail = &piece[e.valid_up_to()..];
                    self.pending[..tail.len()].copy_from_slice(tail);
                    self.pending_len = tail.len() as u8;
                    Ok(())
                }
                Some(_) => self.fail(),
            },
        }
    }

    /// Checks that the stream ended on a code point boundary. Does not reset the validator.
    pub fn finish(&self) -> Result<(), Utf8Violation> {
        match self.pending_len {
            0 => Ok(()),
            Self::FAILED => Err(Utf8Violation::InvalidSequence),
            _ => Err(Utf8Violation::TruncatedSequence),
        }
    }

    /// Whether the stream so far ends inside a code point.
    pub fn is_inside_code_point(&self) -> bool {
        matches!(self.pending_len, 1..=3)
    }

    /// Completes the pending code point from the head of `piece`, returning what follows it.
    fn complete_pending<'a>(&mut self, piece: &'a [u8]) -> Result<&'a [u8], Utf8Violation> {
        let have = usize::from(self.pending_len);
        let width = match self.pending[0] {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        let take = (width - have).min(piece.len());
        let mut point = [0u8; 4];
        point[..have].copy_from_slice(&self.pending[..have]);
        point[have..have + take].copy_from_slice(&piece[..take]);
        match std::str::from_utf8(&point[..have + take]) {
            Ok(_) => {
                self.pending_len = 0;
                Ok(&piece[take..])
            }
            Err(e) if e.error_len().is_none() => {
                // Still a valid prefix: `piece` was too short to finish the code point.
                self.pending[..have + take].copy_from_slice(&point[..have + take]);
                self.pending_len = (have + take) as u8;
                Ok(&[])
            }
            Err(_) => self.fail(),
        }
    }

    fn fail<T>(&mut self) -> Result<T, Utf8Violation> {
        self.pending_len = Self::FAILED;
        Err(Utf8Violation::InvalidSequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `pieces` and returns the index of the piece that failed, if any.
    fn failing_piece(pieces: &[&[u8]]) -> Option<usize> {
        let mut validator = Utf8Validator::new();
        pieces
            .iter()
            .position(|piece| validator.feed(piece).is_err())
    }

    /// The index of the first byte after which `bytes` can no longer become valid UTF-8.
    fn first_bad_byte(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find(|&end| {
            std::str::from_utf8(&bytes[..=end]).is_err_and(|e| e.error_len().is_some())
        })
    }

    #[test]
    fn code_point_split_across_every_boundary_is_accepted() {
        let text = "aé€𝄞z".as_bytes();
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let mut validator = Utf8Validator::new();
                validator.feed(&text[..cut]).unwrap();
                validator.feed(&text[cut..cut2]).unwrap();
                validator.feed(&text[cut2..]).unwrap();
                assert_eq!(validator.finish(), Ok(()), "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn code_point_fed_one_byte_at_a_time_is_accepted() {
        let mut validator = Utf8Validator::new();
        for byte in "𝄞".as_bytes() {
            validator.feed(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn fails_on_the_piece_with_the_bad_byte_not_at_the_end() {
        // Autobahn 6.4.1: the message is broken in its second fragment, the third never matters.
        let pieces: [&[u8]; 3] = [
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
            b"\xf4\x90\x80\x80",
            b"edited",
        ];
        assert_eq!(failing_piece(&pieces), Some(1));
        // A code point cut by a piece boundary is judged by its first impossible byte.
        assert_eq!(failing_piece(&[b"\xf4", b"\x90"]), Some(1));
        assert_eq!(failing_piece(&[b"\xe2\x82", b"A"]), Some(1));
    }

    #[test]
    fn surrogates_and_overlongs_are_invalid_sequences() {
        for bad in [
            &b"\xed\xa0\x80"[..],
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xff",
            b"\x80",
        ] {
            let mut validator = Utf8Validator::new();
            assert_eq!(validator.feed(bad), Err(Utf8Violation::InvalidSequence));
        }
    }

    #[test]
    fn ending_inside_a_code_point_is_truncated() {
        let mut validator = Utf8Validator::new();
        validator.feed(b"ok\xe2\x82").unwrap();
        assert!(validator.is_inside_code_point());
        assert_eq!(validator.finish(), Err(Utf8Violation::TruncatedSequence));
    }

    #[test]
    fn failure_is_sticky() {
        let mut validator = Utf8Validator::new();
        assert!(validator.feed(b"\xff").is_err());
        assert_eq!(validator.feed(b"fine"), Err(Utf8Violation::InvalidSequence));
        assert_eq!(validator.finish(), Err(Utf8Violation::InvalidSequence));
    }

    #[test]
    fn stays_four_bytes() {
        assert_eq!(std::mem::size_of::<Utf8Validator>(), 4);
    }

    fn mostly_utf8() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            (any::<String>(), any::<usize>(), any::<u8>()).prop_map(|(s, at, byte)| {
                let mut bytes = s.into_bytes();
                let at = at % (bytes.len() + 1);
                bytes.insert(at, byte);
                bytes
            }),
            prop::collection::vec(any::<u8>(), 0..32),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_std_and_fails_on_the_first_bad_byte(
            bytes in mostly_utf8(),
            cuts in prop::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(bytes.len());
            let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();

            let expected_piece = first_bad_byte(&bytes)
                .map(|bad| bounds.windows(2).position(|w| w[0] <= bad && bad < w[1]).unwrap());
            prop_assert_eq!(failing_piece(&pieces), expected_piece);

            let mut validator = Utf8Validator::new();
            let fed = pieces.iter().try_for_each(|piece| validator.feed(piece));
            let finished = fed.and_then(|()| validator.finish());
            prop_assert_eq!(finished.is_ok(), std::str::from_utf8(&bytes).is_ok());
        }
    }
}

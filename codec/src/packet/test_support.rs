//! Helpers shared by the packet parsers' tests.

use super::PacketHeader;

/// One packet on the wire.
pub(super) fn encoded(command: u16, payload: &[u8]) -> Vec<u8> {
    let header = PacketHeader {
        command,
        payload_len: payload.len() as u32,
    };
    [&header.to_bytes()[..], payload].concat()
}

/// `input` cut at `points` (each taken modulo the input's length plus one), as reads would.
pub(super) fn split_at_points<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let ends = cuts.iter().copied().chain([input.len()]);
    let starts = [0].into_iter().chain(cuts.iter().copied());
    starts
        .zip(ends)
        .map(|(from, to)| &input[from..to])
        .collect()
}

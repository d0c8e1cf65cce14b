//! The read sizes the stream targets feed their parsers in: the input's first bytes choose
//! them, the rest is the stream. Shared so the targets split a stream the same way.

/// How many leading bytes choose the read sizes.
const SPLIT_BYTES: usize = 8;

/// Splits `input` into (the stream, the stream cut into reads). The first `SPLIT_BYTES` bytes
/// are read sizes, used in turn for at most 64 reads (a size of 0 gives an empty read); the
/// last read is whatever is left.
pub fn split_into_reads(input: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let (sizes, stream) = input.split_at(input.len().min(SPLIT_BYTES));
    let mut reads = Vec::new();
    let mut tail = stream;
    for &size in sizes.iter().cycle().take(64) {
        if tail.is_empty() {
            break;
        }
        let (read, after) = tail.split_at(usize::from(size).min(tail.len()));
        reads.push(read);
        tail = after;
    }
    reads.push(tail);
    (stream, reads)
}

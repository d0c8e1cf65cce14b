//! The payload field types: a reader over a packet's `Bytes` and a writer into a `BytesMut`.
//!
//! Integers are big-endian; `str` is `u16` length + UTF-8, `bytes` is `u32` length + bytes,
//! `list<T>` is `u16` count + items, `bool` is one byte 0 or 1. The reader never copies
//! (`bytes` and `str` fields are slices of the payload), never panics, and checks a declared
//! length or count against the bytes that remain before allocating anything sized by it.
//! Reader and writer take the same field specs, so the writer never emits what the reader refuses.

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_codec::packet::{PacketHeader, HEADER_LEN};

use crate::Text;

/// Why a payload does not parse. Every variant names the field, as `command.field`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ends inside the field.
    #[error("{field}: needs {need} bytes, only {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The bytes the field needs (its declared length, for a `str` or `bytes` body).
        need: usize,
        /// The bytes left in the payload.
        left: usize,
    },
    /// A `str` field is not valid UTF-8.
    #[error("{field}: not valid UTF-8")]
    BadUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A `str` field's length is outside what the field allows.
    #[error("{field}: length {len} is outside {min}..={max}")]
    BadLength {
        /// The field being read.
        field: &'static str,
        /// The declared length in bytes.
        len: usize,
        /// The shortest the field may be.
        min: usize,
        /// The longest the field may be.
        max: usize,
    },
    /// An id or name contains a control character.
    #[error("{field}: contains a control character")]
    ControlChar {
        /// The field being read.
        field: &'static str,
    },
    /// A list declares more items than the field allows.
    #[error("{field}: {count} items, at most {max} allowed")]
    TooMany {
        /// The list being read.
        field: &'static str,
        /// The declared count.
        count: usize,
        /// The most the field allows.
        max: usize,
    },
    /// A list declares more items than the remaining bytes could hold even at their shortest.
    #[error("{field}: {count} items cannot fit in the {left} bytes left")]
    CountBeyondPayload {
        /// The list being read.
        field: &'static str,
        /// The declared count.
        count: usize,
        /// The bytes left in the payload.
        left: usize,
    },
    /// A `bool` byte is neither 0 nor 1.
    #[error("{field}: {got} is not a bool (0 or 1)")]
    BadBool {
        /// The field being read.
        field: &'static str,
        /// The byte received.
        got: u8,
    },
    /// A tag byte names no known layout (e.g. a message kind other than 1 or 2).
    #[error("{field}: unknown tag {got}")]
    UnknownTag {
        /// The field being read.
        field: &'static str,
        /// The byte received.
        got: u8,
    },
    /// Bytes remain after the last field.
    #[error("{count} bytes after the last field")]
    TrailingBytes {
        /// How many bytes remain.
        count: usize,
    },
}

/// Why a value could not be encoded: it breaks a limit the decoder enforces, or the packet
/// would not fit the framing. Encoding leaves the destination buffer as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A `str` or `bytes` field's length is outside what the field allows.
    #[error("{field}: length {len} is outside {min}..={max}")]
    BadLength {
        /// The field being written.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The shortest the field may be.
        min: usize,
        /// The longest the field may be.
        max: usize,
    },
    /// An id or name contains a control character.
    #[error("{field}: contains a control character")]
    ControlChar {
        /// The field being written.
        field: &'static str,
    },
    /// A list has more items than the field allows.
    #[error("{field}: {count} items, at most {max} allowed")]
    TooMany {
        /// The list being written.
        field: &'static str,
        /// Its length.
        count: usize,
        /// The most the field allows.
        max: usize,
    },
    /// The payload does not fit the packet header's `u32` length.
    #[error(transparent)]
    Packet(#[from] switchboard_codec::packet::EncodeError),
}

/// A `str` field: its name, the byte lengths it allows, and whether it refuses control
/// characters (ids and names, which end up in logs and user interfaces).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrField {
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
    pub no_control: bool,
}

impl StrField {
    /// Any UTF-8 of `min..=max` bytes.
    pub const fn new(name: &'static str, min: usize, max: usize) -> Self {
        StrField {
            name,
            min,
            max,
            no_control: false,
        }
    }

    /// A user id: 1..=64 bytes, no control characters.
    pub const fn user_id(name: &'static str) -> Self {
        StrField {
            no_control: true,
            ..StrField::new(
                name,
                crate::limits::MIN_USER_ID_LEN,
                crate::limits::MAX_USER_ID_LEN,
            )
        }
    }

    /// A group name: 1..=64 bytes, no control characters.
    pub const fn group_name(name: &'static str) -> Self {
        StrField {
            no_control: true,
            ..StrField::new(
                name,
                crate::limits::MIN_GROUP_NAME_LEN,
                crate::limits::MAX_GROUP_NAME_LEN,
            )
        }
    }

    fn has_refused_char(&self, text: &str) -> bool {
        self.no_control && text.chars().any(char::is_control)
    }
}

/// A `list<T>` field: its name, the most items it allows, and the fewest bytes one item takes
/// (which bounds a believable count by the bytes left).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListField {
    pub name: &'static str,
    pub max: usize,
    pub min_item_len: usize,
}

/// Reads the fields of one payload in order.
pub(crate) struct Reader {
    payload: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(payload: Bytes) -> Self {
        Reader { payload, pos: 0 }
    }

    fn left(&self) -> usize {
        self.payload.len() - self.pos
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let left = self.left();
        let Some(bytes) = self.payload[self.pos..].first_chunk::<N>() else {
            return Err(DecodeError::Truncated {
                field,
                need: N,
                left,
            });
        };
        self.pos += N;
        Ok(*bytes)
    }

    fn slice(&mut self, field: &'static str, len: usize) -> Result<Bytes, DecodeError> {
        let left = self.left();
        if len > left {
            return Err(DecodeError::Truncated {
                field,
                need: len,
                left,
            });
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.payload.slice(start..self.pos))
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.take::<1>(field).map(|[b]| b)
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.take(field).map(u16::from_be_bytes)
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.take(field).map(u32::from_be_bytes)
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.take(field).map(u64::from_be_bytes)
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            got => Err(DecodeError::BadBool { field, got }),
        }
    }

    pub fn text(&mut self, spec: StrField) -> Result<Text, DecodeError> {
        let len = usize::from(self.u16(spec.name)?);
        if len < spec.min || len > spec.max {
            return Err(DecodeError::BadLength {
                field: spec.name,
                len,
                min: spec.min,
                max: spec.max,
            });
        }
        let bytes = self.slice(spec.name, len)?;
        let text = Text::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8 { field: spec.name })?;
        if spec.has_refused_char(text.as_str()) {
            return Err(DecodeError::ControlChar { field: spec.name });
        }
        Ok(text)
    }

    pub fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)?;
        self.slice(field, usize::try_from(len).unwrap_or(usize::MAX))
    }

    /// A list's count, checked against the field's maximum and against the bytes left.
    pub fn count(&mut self, spec: ListField) -> Result<usize, DecodeError> {
        let count = usize::from(self.u16(spec.name)?);
        if count > spec.max {
            return Err(DecodeError::TooMany {
                field: spec.name,
                count,
                max: spec.max,
            });
        }
        let left = self.left();
        if count.saturating_mul(spec.min_item_len) > left {
            return Err(DecodeError::CountBeyondPayload {
                field: spec.name,
                count,
                left,
            });
        }
        Ok(count)
    }

    pub fn u64_list(&mut self, spec: ListField) -> Result<Vec<u64>, DecodeError> {
        let count = self.count(spec)?;
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(self.u64(spec.name)?);
        }
        Ok(ids)
    }

    pub fn text_list(&mut self, spec: ListField, item: StrField) -> Result<Vec<Text>, DecodeError> {
        let count = self.count(spec)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.text(item)?);
        }
        Ok(items)
    }

    /// Refuses bytes left after the last field.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Appends fields to a payload being written.
pub(crate) struct Writer<'a> {
    dst: &'a mut BytesMut,
}

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.dst.put_u8(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.dst.put_u16(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.dst.put_u32(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.dst.put_u64(v);
    }

    pub fn bool(&mut self, v: bool) {
        self.dst.put_u8(u8::from(v));
    }

    pub fn text(&mut self, spec: StrField, text: &str) -> Result<(), EncodeError> {
        let len = text.len();
        let max = spec.max.min(usize::from(u16::MAX));
        if len < spec.min || len > max {
            return Err(EncodeError::BadLength {
                field: spec.name,
                len,
                min: spec.min,
                max,
            });
        }
        if spec.has_refused_char(text) {
            return Err(EncodeError::ControlChar { field: spec.name });
        }
        self.dst.put_u16(len as u16);
        self.dst.put_slice(text.as_bytes());
        Ok(())
    }

    pub fn bytes(&mut self, field: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
        let len = u32::try_from(bytes.len()).map_err(|_| EncodeError::BadLength {
            field,
            len: bytes.len(),
            min: 0,
            max: u32::MAX as usize,
        })?;
        self.dst.put_u32(len);
        self.dst.put_slice(bytes);
        Ok(())
    }

    pub fn count(&mut self, spec: ListField, count: usize) -> Result<(), EncodeError> {
        let max = spec.max.min(usize::from(u16::MAX));
        if count > max {
            return Err(EncodeError::TooMany {
                field: spec.name,
                count,
                max,
            });
        }
        self.dst.put_u16(count as u16);
        Ok(())
    }

    pub fn u64_list(&mut self, spec: ListField, ids: &[u64]) -> Result<(), EncodeError> {
        self.count(spec, ids.len())?;
        for &id in ids {
            self.u64(id);
        }
        Ok(())
    }

    pub fn text_list(
        &mut self,
        spec: ListField,
        item: StrField,
        items: &[Text],
    ) -> Result<(), EncodeError> {
        self.count(spec, items.len())?;
        for text in items {
            self.text(item, text.as_str())?;
        }
        Ok(())
    }
}

/// Appends one whole packet to `dst`: a header for `command`, then the payload `fields` write.
///
/// The header's length is filled in once the payload is written. On error `dst` is truncated
/// back to where it was.
pub(crate) fn write_packet(
    command: u16,
    dst: &mut BytesMut,
    fields: impl FnOnce(&mut Writer<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_slice(&[0; HEADER_LEN]);
    let written = fields(&mut Writer { dst }).and_then(|()| {
        let payload_len = dst.len() - start - HEADER_LEN;
        Ok(PacketHeader::for_payload(command, payload_len)?)
    });
    match written {
        Ok(header) => {
            dst[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
            Ok(())
        }
        Err(error) => {
            dst.truncate(start);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: StrField = StrField::new("t.name", 1, 4);
    const IDS: ListField = ListField {
        name: "t.ids",
        max: 3,
        min_item_len: 8,
    };

    fn reader(bytes: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(bytes))
    }

    #[test]
    fn integers_are_big_endian() {
        let mut r = reader(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f");
        assert_eq!(r.u8("a"), Ok(0x01));
        assert_eq!(r.u16("b"), Ok(0x0203));
        assert_eq!(r.u32("c"), Ok(0x0405_0607));
        assert_eq!(r.u64("d"), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn truncated_integer_names_the_field() {
        let mut r = reader(b"\x00\x00\x01");
        assert_eq!(
            r.u32("t.seq"),
            Err(DecodeError::Truncated {
                field: "t.seq",
                need: 4,
                left: 3
            })
        );
    }

    #[test]
    fn str_body_shorter_than_its_length_is_truncated() {
        let mut r = reader(b"\x00\x03ab");
        assert_eq!(
            r.text(NAME),
            Err(DecodeError::Truncated {
                field: "t.name",
                need: 3,
                left: 2
            })
        );
    }

    #[test]
    fn str_outside_its_length_bounds_is_refused_before_reading_it() {
        let mut r = reader(b"\x00\x00");
        let bad = |len| DecodeError::BadLength {
            field: "t.name",
            len,
            min: 1,
            max: 4,
        };
        assert_eq!(r.text(NAME), Err(bad(0)));
        assert_eq!(reader(b"\x00\x05").text(NAME), Err(bad(5)));
    }

    #[test]
    fn bad_utf8_is_refused() {
        assert_eq!(
            reader(b"\x00\x02\xc3\x28").text(NAME),
            Err(DecodeError::BadUtf8 { field: "t.name" })
        );
    }

    #[test]
    fn control_characters_in_an_id_are_refused_both_ways() {
        let id = StrField::user_id("t.id");
        assert_eq!(
            reader(b"\x00\x03a\nb").text(id),
            Err(DecodeError::ControlChar { field: "t.id" })
        );
        assert_eq!(reader(b"\x00\x03a\nb").text(NAME).unwrap(), "a\nb");
        let mut dst = BytesMut::new();
        let refused = write_packet(1, &mut dst, |w| w.text(id, "a\u{7f}"));
        assert_eq!(refused, Err(EncodeError::ControlChar { field: "t.id" }));
    }

    #[test]
    fn bytes_and_str_fields_are_slices_of_the_payload() {
        let payload = Bytes::from_static(b"\x00\x02hi\x00\x00\x00\x03abc");
        let mut r = Reader::new(payload.clone());
        let text = r.text(NAME).unwrap();
        let body = r.bytes("t.body").unwrap();
        assert_eq!(text.as_bytes().as_ptr(), payload[2..].as_ptr());
        assert_eq!(body.as_ptr(), payload[8..].as_ptr());
        assert_eq!(&body[..], b"abc");
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn huge_bytes_length_is_truncated_not_allocated() {
        assert_eq!(
            reader(b"\xff\xff\xff\xffxyz").bytes("t.body"),
            Err(DecodeError::Truncated {
                field: "t.body",
                need: u32::MAX as usize,
                left: 3
            })
        );
    }

    #[test]
    fn count_over_the_maximum_and_beyond_the_payload_are_refused() {
        assert_eq!(
            reader(b"\x00\x04").count(IDS),
            Err(DecodeError::TooMany {
                field: "t.ids",
                count: 4,
                max: 3
            })
        );
        assert_eq!(
            reader(b"\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01").count(IDS),
            Err(DecodeError::CountBeyondPayload {
                field: "t.ids",
                count: 2,
                left: 8
            })
        );
    }

    #[test]
    fn bool_is_zero_or_one() {
        let mut r = reader(b"\x00\x01\x02");
        assert_eq!(r.bool("t.b"), Ok(false));
        assert_eq!(r.bool("t.b"), Ok(true));
        assert_eq!(
            r.bool("t.b"),
            Err(DecodeError::BadBool {
                field: "t.b",
                got: 2
            })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut r = reader(b"\x00\x01\xff");
        r.u16("t.a").unwrap();
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { count: 1 }));
    }

    #[test]
    fn write_packet_fills_in_the_header_and_rewinds_on_error() {
        let mut dst = BytesMut::from(&b"prev"[..]);
        write_packet(0x0102, &mut dst, |w| {
            w.u16(7);
            w.text(NAME, "ab")
        })
        .unwrap();
        assert_eq!(
            &dst[..],
            b"prevSWB1\x01\x02\x00\x00\x00\x06\x00\x07\x00\x02ab"
        );
        let refused = write_packet(1, &mut dst, |w| {
            w.u64(1);
            w.text(NAME, "too long")
        });
        assert_eq!(
            refused,
            Err(EncodeError::BadLength {
                field: "t.name",
                len: 8,
                min: 1,
                max: 4
            })
        );
        assert_eq!(
            dst.len(),
            4 + HEADER_LEN + 6,
            "the failed packet left nothing"
        );
    }

    #[test]
    fn writer_refuses_a_list_over_its_maximum() {
        let mut dst = BytesMut::new();
        let refused = write_packet(1, &mut dst, |w| w.u64_list(IDS, &[1, 2, 3, 4]));
        assert_eq!(
            refused,
            Err(EncodeError::TooMany {
                field: "t.ids",
                count: 4,
                max: 3
            })
        );
        assert!(dst.is_empty());
    }
}

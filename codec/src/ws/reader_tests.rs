//! Unit and property tests of `reader.rs`: the RFC 6455 §5.7 examples, limits judged from
//! headers, UTF-8 failing fast, every refusal, and any split of any frame stream giving the
//! messages of the whole.

use super::*;
use crate::ws::close::CloseCode;
use crate::ws::mask::apply_mask;
use crate::ws::role::{Client, Server};
use proptest::prelude::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One frame on the wire, masked when `mask` is given.
fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut dst = BytesMut::new();
    header.write(&mut dst);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key, 0);
    }
    dst.to_vec()
}

/// A frame a client sends to a server.
fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, Some(KEY))
}

type Outcome = (Vec<Message>, Result<(), ProtocolError>);

/// Feeds `chunks` one after the other, reading every message each makes whole.
fn read_chunks<'a, R: Role>(
    reader: &mut MessageReader<R>,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let mut src = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        src.extend_from_slice(chunk);
        loop {
            match reader.read(&mut src) {
                Ok(Decoded::Complete(message)) => messages.push(message),
                Ok(Decoded::NeedMore) => break,
                Err(e) => return (messages, Err(e)),
            }
        }
    }
    (messages, Ok(()))
}

fn read_whole<R: Role>(config: ReaderConfig, bytes: &[u8]) -> Outcome {
    read_chunks(&mut MessageReader::<R>::new(config), [bytes])
}

fn server(bytes: &[u8]) -> Outcome {
    read_whole::<Server>(ReaderConfig::default(), bytes)
}

fn server_error(bytes: &[u8]) -> ProtocolError {
    server(bytes).1.expect_err("the stream must be refused")
}

fn client(bytes: &[u8]) -> Outcome {
    read_whole::<Client>(ReaderConfig::default(), bytes)
}

fn text(s: &'static str) -> Message {
    Message::Text(Bytes::from_static(s.as_bytes()))
}

#[test]
fn rfc_5_7_single_frame_unmasked_text() {
    let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(client(&bytes), (vec![text("Hello")], Ok(())));
}

#[test]
fn rfc_5_7_single_frame_masked_text() {
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(server(&bytes), (vec![text("Hello")], Ok(())));
}

#[test]
fn rfc_5_7_fragmented_unmasked_text() {
    let bytes = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(client(&bytes), (vec![text("Hello")], Ok(())));
}

#[test]
fn rfc_5_7_unmasked_ping() {
    let bytes = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let ping = Message::Ping(Bytes::from_static(b"Hello"));
    assert_eq!(client(&bytes), (vec![ping], Ok(())));
}

#[test]
fn rfc_5_7_masked_pong() {
    let bytes = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let pong = Message::Pong(Bytes::from_static(b"Hello"));
    assert_eq!(server(&bytes), (vec![pong], Ok(())));
}

#[test]
fn rfc_5_7_256_bytes_binary_in_a_single_unmasked_frame() {
    let payload = vec![0xAB; 256];
    let mut bytes = vec![0x82, 0x7E, 0x01, 0x00];
    bytes.extend_from_slice(&payload);
    assert_eq!(
        client(&bytes),
        (vec![Message::Binary(payload.into())], Ok(()))
    );
}

#[test]
fn rfc_5_7_64_kib_binary_in_a_single_unmasked_frame() {
    let payload: Vec<u8> = (0..65536u32).map(|i| i as u8).collect();
    let mut bytes = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    bytes.extend_from_slice(&payload);
    assert_eq!(
        client(&bytes),
        (vec![Message::Binary(payload.into())], Ok(()))
    );
}

#[test]
fn control_frames_pass_between_fragments() {
    let mut bytes = masked(OpCode::Binary, false, b"ab");
    bytes.extend(masked(OpCode::Ping, true, b"p"));
    bytes.extend(masked(OpCode::Continuation, false, b"cd"));
    bytes.extend(masked(OpCode::Pong, true, b""));
    bytes.extend(masked(OpCode::Continuation, true, b"e"));
    let expected = vec![
        Message::Ping(Bytes::from_static(b"p")),
        Message::Pong(Bytes::new()),
        Message::Binary(Bytes::from_static(b"abcde")),
    ];
    assert_eq!(server(&bytes), (expected, Ok(())));
}

#[test]
fn close_frames_carry_code_and_reason() {
    let mut bytes = masked(OpCode::Close, true, b"\x03\xe8bye");
    bytes.extend(masked(OpCode::Close, true, b""));
    let expected = vec![
        Message::Close(Some(CloseFrame {
            code: CloseCode::NORMAL,
            reason: Bytes::from_static(b"bye"),
        })),
        Message::Close(None),
    ];
    assert_eq!(server(&bytes), (expected, Ok(())));
}

#[test]
fn single_frame_payload_is_split_off_without_copying() {
    let mut src = BytesMut::from(&masked(OpCode::Binary, true, b"payload")[..]);
    let payload_at = src.as_ptr() as usize + 6;
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    let Ok(Decoded::Complete(Message::Binary(payload))) = reader.read(&mut src) else {
        panic!("binary message expected");
    };
    assert_eq!(
        (&payload[..], payload.as_ptr() as usize),
        (&b"payload"[..], payload_at)
    );
}

#[test]
fn frame_len_is_known_once_the_header_is_in() {
    let bytes = masked(OpCode::Binary, true, &[7; 300]);
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    assert_eq!(reader.frame_len(), None);
    let mut src = BytesMut::from(&bytes[..5]);
    assert!(matches!(reader.read(&mut src), Ok(Decoded::NeedMore)));
    assert_eq!(reader.frame_len(), None, "the header is 8 bytes");
    src.extend_from_slice(&bytes[5..20]);
    assert!(matches!(reader.read(&mut src), Ok(Decoded::NeedMore)));
    assert_eq!(reader.frame_len(), Some(bytes.len()));
    src.extend_from_slice(&bytes[20..]);
    assert!(matches!(reader.read(&mut src), Ok(Decoded::Complete(_))));
    assert_eq!(reader.frame_len(), None);
}

#[test]
fn fits_64_bytes() {
    assert!(std::mem::size_of::<MessageReader<Server>>() <= 64);
    assert!(std::mem::size_of::<MessageReader<Client>>() <= 64);
}

#[test]
fn holds_no_heap_memory_between_messages() {
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    let mut bytes = masked(OpCode::Text, false, "κό".as_bytes());
    bytes.extend(masked(OpCode::Continuation, true, "σμε".as_bytes()));
    let mut src = BytesMut::from(&bytes[..]);
    assert_eq!(reader.read(&mut src), Ok(Decoded::Complete(text("κόσμε"))));
    assert!(reader.is_idle());
    assert_eq!(reader.fragments.capacity(), 0);
}

#[test]
fn message_at_the_limit_is_accepted() {
    let config = ReaderConfig {
        max_message: 4,
        ..ReaderConfig::default()
    };
    let mut bytes = masked(OpCode::Binary, false, b"ab");
    bytes.extend(masked(OpCode::Continuation, true, b"cd"));
    let (messages, result) = read_whole::<Server>(config, &bytes);
    assert_eq!((messages.len(), result), (1, Ok(())));
}

#[test]
fn too_big_single_frame_is_refused_from_its_header_alone() {
    let config = ReaderConfig {
        max_message: 255,
        ..ReaderConfig::default()
    };
    let header = &masked(OpCode::Binary, true, &[0; 256])[..8];
    let error = read_whole::<Server>(config, header).1;
    assert_eq!(
        error,
        Err(ProtocolError::MessageTooBig { len: 256, max: 255 })
    );
}

#[test]
fn too_big_fragmented_message_is_refused_at_the_fragment_that_passes_the_limit() {
    let config = ReaderConfig {
        max_message: 5,
        ..ReaderConfig::default()
    };
    let mut bytes = masked(OpCode::Text, false, b"abc");
    bytes.extend(masked(OpCode::Ping, true, b"control frames do not count"));
    bytes.extend(&masked(OpCode::Continuation, true, b"def")[..6]);
    let (messages, result) = read_whole::<Server>(config, &bytes);
    assert_eq!(messages.len(), 1);
    assert_eq!(result, Err(ProtocolError::MessageTooBig { len: 6, max: 5 }));
}

#[test]
fn invalid_text_fails_before_the_frame_has_arrived() {
    // Autobahn 6.4.3: the bad bytes come early in a frame whose end is still on the way.
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64";
    let bytes = masked(OpCode::Text, true, payload);
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    // "κόσμε" then 0xF4, which may still start a code point.
    let mut src = BytesMut::from(&bytes[..6 + 12]);
    assert_eq!(reader.read(&mut src), Ok(Decoded::NeedMore));
    // 0x90 cannot follow 0xF4 (it would pass U+10FFFF).
    src.extend_from_slice(&bytes[6 + 12..6 + 13]);
    assert_eq!(reader.read(&mut src), Err(ProtocolError::InvalidUtf8Text));
}

#[test]
fn invalid_text_fails_at_its_fragment_not_at_the_end_of_the_message() {
    // Autobahn 6.4.1: the third fragment is never needed.
    let mut bytes = masked(OpCode::Text, false, "κόσμε".as_bytes());
    bytes.extend(masked(OpCode::Continuation, false, b"\xf4\x90\x80\x80"));
    assert_eq!(server_error(&bytes), ProtocolError::InvalidUtf8Text);
}

#[test]
fn text_ending_inside_a_code_point_is_truncated() {
    let mut bytes = masked(OpCode::Text, false, b"ok\xe2");
    bytes.extend(masked(OpCode::Continuation, true, b"\x82"));
    assert_eq!(server_error(&bytes), ProtocolError::TruncatedUtf8Text);
}

#[test]
fn binary_is_not_checked_for_utf8() {
    let bytes = masked(OpCode::Binary, true, b"\xff\xfe");
    assert_eq!(server(&bytes).1, Ok(()));
}

#[test]
fn refusals_of_the_header() {
    let cases: [(&[u8], ProtocolError); 9] = [
        (&[0xC2, 0x80], ProtocolError::ReservedBitsSet { rsv: 0b100 }),
        (&[0x93, 0x80], ProtocolError::ReservedBitsSet { rsv: 0b001 }),
        (&[0x83, 0x80], ProtocolError::UnknownOpcode { opcode: 3 }),
        (&[0x8B, 0x80], ProtocolError::UnknownOpcode { opcode: 0xB }),
        (
            &[0x09, 0x80],
            ProtocolError::FragmentedControlFrame {
                opcode: OpCode::Ping,
            },
        ),
        (
            &[0x88, 0xFE],
            ProtocolError::ControlFrameTooLong {
                opcode: OpCode::Close,
            },
        ),
        (
            &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
            ProtocolError::LengthMsbSet,
        ),
        (
            &[0x82, 0xFE, 0, 5],
            ProtocolError::NonMinimalLength { len: 5 },
        ),
        (&[0x82, 0x05], ProtocolError::UnmaskedClientFrame),
    ];
    for (bytes, error) in cases {
        assert_eq!(server_error(bytes), error, "{bytes:x?}");
    }
    assert_eq!(
        client(&[0x82, 0x85]).1,
        Err(ProtocolError::MaskedServerFrame)
    );
}

#[test]
fn allowed_rsv_bits_are_accepted() {
    let config = ReaderConfig {
        allowed_rsv: FrameHeader::RSV1,
        ..ReaderConfig::default()
    };
    let mut bytes = masked(OpCode::Binary, true, b"x");
    bytes[0] |= 0x40;
    assert_eq!(read_whole::<Server>(config, &bytes).1, Ok(()));
    bytes[0] |= 0x20;
    assert_eq!(
        read_whole::<Server>(config, &bytes).1,
        Err(ProtocolError::ReservedBitsSet { rsv: 0b110 })
    );
}

#[test]
fn continuation_without_a_message_is_refused() {
    let bytes = masked(OpCode::Continuation, true, b"lo");
    assert_eq!(
        server_error(&bytes),
        ProtocolError::ContinuationWithoutMessage
    );
}

#[test]
fn new_data_frame_inside_a_message_is_refused() {
    let mut bytes = masked(OpCode::Text, false, b"Hel");
    bytes.extend(masked(OpCode::Binary, true, b"lo"));
    assert_eq!(
        server_error(&bytes),
        ProtocolError::DataFrameInsideMessage {
            opcode: OpCode::Binary
        }
    );
}

#[test]
fn close_payload_refusals() {
    let one_byte = masked(OpCode::Close, true, b"\x03");
    assert_eq!(server_error(&one_byte), ProtocolError::CloseFrameTooShort);
    let reserved = masked(OpCode::Close, true, b"\x03\xed");
    assert_eq!(
        server_error(&reserved),
        ProtocolError::InvalidCloseCode { code: 1005 }
    );
    let bad_reason = masked(OpCode::Close, true, b"\x03\xe8\xff");
    assert_eq!(
        server_error(&bad_reason),
        ProtocolError::InvalidUtf8CloseReason
    );
}

#[test]
fn an_error_is_repeated_by_every_further_call() {
    let mut invalid_mid_frame = masked(OpCode::Text, true, b"a\xffbcd");
    invalid_mid_frame.truncate(8);
    let mut cases = vec![
        invalid_mid_frame,
        masked(OpCode::Text, true, b"ok\xe2\x82"),
        masked(OpCode::Close, true, b"\x03"),
        masked(OpCode::Continuation, true, b""),
    ];
    cases[3].extend(masked(OpCode::Binary, true, b"never read"));
    for bytes in cases {
        let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
        let mut src = BytesMut::from(&bytes[..]);
        let first = reader.read(&mut src);
        assert!(first.is_err(), "{bytes:x?}");
        src.extend_from_slice(&masked(OpCode::Binary, true, b"more"));
        assert_eq!(reader.read(&mut src), first);
    }
}

#[test]
fn a_buffer_shortened_against_the_contract_does_not_panic() {
    let mut reader = MessageReader::<Server>::new(ReaderConfig::default());
    let mut src = BytesMut::from(&masked(OpCode::Close, true, b"\x03\xe8\xff")[..]);
    assert!(reader.read(&mut src).is_err());
    src.clear();
    assert!(matches!(reader.read(&mut src), Ok(Decoded::Complete(_))));
}

/// A stream of frames to send and the messages a reader must make of it.
#[derive(Debug, Clone)]
struct Script {
    frames: Vec<(OpCode, bool, Vec<u8>)>,
    expected: Vec<Message>,
}

fn any_control() -> impl Strategy<Value = (OpCode, Vec<u8>, Message)> {
    let payload = prop::collection::vec(any::<u8>(), 0..=125);
    let reason = "[a-zé€𝄞 ]{0,30}";
    let code = prop_oneof![1000..=1003u16, 1007..=1014u16, 3000..=4999u16];
    prop_oneof![
        payload
            .clone()
            .prop_map(|p| (OpCode::Ping, p.clone(), Message::Ping(p.into()))),
        payload.prop_map(|p| (OpCode::Pong, p.clone(), Message::Pong(p.into()))),
        Just((OpCode::Close, Vec::new(), Message::Close(None))),
        (code, reason).prop_map(|(code, reason)| {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            let close = CloseFrame {
                code: CloseCode(code),
                reason: Bytes::from(reason),
            };
            (OpCode::Close, payload, Message::Close(Some(close)))
        }),
    ]
}

/// A data message cut at byte positions (inside code points too), with control frames
/// between some of its fragments.
fn any_data_message() -> impl Strategy<Value = Script> {
    let body = prop_oneof![
        8 => any::<String>().prop_map(|s| (true, s.into_bytes())),
        8 => prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| (false, b)),
        1 => prop::collection::vec(any::<u8>(), 65_536..66_000).prop_map(|b| (false, b)),
    ];
    let cuts = prop::collection::vec(any::<usize>(), 0..5);
    let controls = prop::collection::vec(prop::option::of(any_control()), 0..5);
    (body, cuts, controls).prop_map(|((is_text, body), cuts, controls)| {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(body.len());
        let pieces = bounds.len() - 1;
        let mut script = Script {
            frames: Vec::new(),
            expected: Vec::new(),
        };
        for (i, w) in bounds.windows(2).enumerate() {
            let opcode = match (i, is_text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            script
                .frames
                .push((opcode, i + 1 == pieces, body[w[0]..w[1]].to_vec()));
            if let Some(Some((opcode, payload, message))) = controls.get(i) {
                if i + 1 < pieces {
                    script.frames.push((*opcode, true, payload.clone()));
                    script.expected.push(message.clone());
                }
            }
        }
        script.expected.push(data_message(is_text, body.into()));
        script
    })
}

fn any_script() -> impl Strategy<Value = Script> {
    let item = prop_oneof![
        3 => any_data_message(),
        1 => any_control().prop_map(|(opcode, payload, message)| Script {
            frames: vec![(opcode, true, payload)],
            expected: vec![message],
        }),
    ];
    prop::collection::vec(item, 0..6).prop_map(|items| Script {
        frames: items.iter().flat_map(|s| s.frames.clone()).collect(),
        expected: items.into_iter().flat_map(|s| s.expected).collect(),
    })
}

/// Encodes the frames, masking each with its own key when `key_seed` is given.
fn encode(script: &Script, key_seed: Option<u32>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, (opcode, fin, payload)) in script.frames.iter().enumerate() {
        let key = key_seed.map(|seed| (seed ^ (i as u32).wrapping_mul(0x9E37_79B9)).to_le_bytes());
        bytes.extend(frame(*opcode, *fin, payload, key));
    }
    bytes
}

/// `bytes` cut at the given points (taken modulo its length).
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks
}

fn one_byte_at_a_time(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.chunks(1).collect()
}

/// Checks that reading `bytes` cut at `cuts`, and byte by byte, gives the outcome of
/// reading it whole, and returns that outcome.
fn whole_agrees_with_splits<R: Role>(
    config: ReaderConfig,
    bytes: &[u8],
    cuts: &[usize],
) -> Outcome {
    let whole = read_whole::<R>(config, bytes);
    let reader = &mut MessageReader::<R>::new(config);
    assert_eq!(read_chunks(reader, split(bytes, cuts)), whole);
    if bytes.len() < 2048 {
        let reader = &mut MessageReader::<R>::new(config);
        assert_eq!(read_chunks(reader, one_byte_at_a_time(bytes)), whole);
    }
    whole
}

proptest! {
    #[test]
    fn valid_frames_under_any_split_yield_the_original_messages(
        script in any_script(),
        key_seed in any::<u32>(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let config = ReaderConfig::default();
        let to_server = encode(&script, Some(key_seed));
        let outcome = whole_agrees_with_splits::<Server>(config, &to_server, &cuts);
        prop_assert_eq!(outcome, (script.expected.clone(), Ok(())));

        let to_client = encode(&script, None);
        let outcome = whole_agrees_with_splits::<Client>(config, &to_client, &cuts);
        prop_assert_eq!(outcome, (script.expected, Ok(())));
    }

    #[test]
    fn arbitrary_bytes_under_any_split_agree_with_the_whole(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max_message in 0..400usize,
    ) {
        let config = ReaderConfig { max_message, allowed_rsv: 0 };
        let _outcome = whole_agrees_with_splits::<Server>(config, &bytes, &cuts);
        let _outcome = whole_agrees_with_splits::<Client>(config, &bytes, &cuts);
    }

    #[test]
    fn damaged_valid_streams_under_any_split_agree_with_the_whole(
        script in any_script(),
        key_seed in any::<u32>(),
        damage in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max_message in prop_oneof![Just(1usize << 20), 0..700usize],
    ) {
        let config = ReaderConfig { max_message, allowed_rsv: 0 };
        for key_seed in [Some(key_seed), None] {
            let mut bytes = encode(&script, key_seed);
            if bytes.is_empty() {
                continue;
            }
            for (at, byte) in &damage {
                let len = bytes.len();
                bytes[at % len] ^= byte;
            }
            if key_seed.is_some() {
                let _outcome = whole_agrees_with_splits::<Server>(config, &bytes, &cuts);
            } else {
                let _outcome = whole_agrees_with_splits::<Client>(config, &bytes, &cuts);
            }
        }
    }
}

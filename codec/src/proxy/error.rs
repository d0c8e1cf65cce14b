//! Why a PROXY protocol header was refused.
//!
//! One variant per refusal. Every refusal is final for its connection: the spec says a receiver
//! configured for the protocol must abort a connection whose first bytes are not a complete,
//! valid header, and must never guess. The gateway logs the refusal with the real peer address.

use std::fmt;

/// Which of the two addresses (or ports) of a header a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The client's side: the connection's original source.
    Source,
    /// The side the client connected to: the balancer's listening address.
    Destination,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Source => "source",
            Endpoint::Destination => "destination",
        })
    }
}

/// A refusal of the bytes that should open a connection with a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not begin with a PROXY header: `byte`, at `offset`, can begin
    /// neither the v1 text `PROXY ` nor the v2 binary signature. Refused on that byte.
    #[error(
        "no PROXY protocol header: byte {byte:#04x} at offset {offset} begins neither v1 nor v2"
    )]
    NoHeader {
        /// Position of the first byte that cannot belong to a header.
        offset: usize,
        /// That byte.
        byte: u8,
    },
    /// A v1 line without its CRLF within the 107 bytes the spec allows.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line with a CR not followed by LF, or an LF not preceded by CR, at `offset`.
    #[error("PROXY v1 line has a bare CR or LF at offset {offset}; it must end with CRLF")]
    V1BadLineEnd {
        /// Position of the stray CR or LF.
        offset: usize,
    },
    /// A v1 protocol other than `TCP4`, `TCP6` or `UNKNOWN`; refused as soon as its bytes
    /// cannot begin one of them.
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol,
    /// A byte that cannot appear in a v1 `TCP4`/`TCP6` line (only digits, hex letters, `.`,
    /// `:` and single spaces can), at `offset`.
    #[error("PROXY v1 line has byte {byte:#04x} at offset {offset}, outside addresses and ports")]
    V1BadByte {
        /// Position of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A v1 `TCP4`/`TCP6` line without exactly four fields after the protocol, each separated
    /// by exactly one space.
    #[error("PROXY v1 line must hold source, destination, source port, destination port")]
    V1Fields,
    /// An address that is not an address of the line's family in canonical text.
    #[error("PROXY v1 {endpoint} address is not a valid address")]
    V1BadAddress {
        /// Which address.
        endpoint: Endpoint,
    },
    /// An address of the other family: an IPv6 address on a `TCP4` line or the reverse.
    #[error("PROXY v1 {endpoint} address is not of the family the line declares")]
    V1FamilyMismatch {
        /// Which address.
        endpoint: Endpoint,
    },
    /// A port that is not a decimal number in 0..=65535 without leading zeros.
    #[error("PROXY v1 {endpoint} port is not a decimal in 0..=65535 without leading zeros")]
    V1BadPort {
        /// Which port.
        endpoint: Endpoint,
    },
    /// A v2 version nibble other than 2.
    #[error("PROXY v2 version {version} is not 2")]
    V2Version {
        /// The high nibble of the 13th byte.
        version: u8,
    },
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 command {command} is neither LOCAL nor PROXY")]
    V2Command {
        /// The low nibble of the 13th byte.
        command: u8,
    },
    /// A v2 address family other than UNSPEC, INET, INET6 and UNIX (on a PROXY command).
    #[error("PROXY v2 address family {family} is not defined")]
    V2Family {
        /// The high nibble of the 14th byte.
        family: u8,
    },
    /// A v2 transport other than UNSPEC, STREAM and DGRAM (on a PROXY command).
    #[error("PROXY v2 transport {transport} is not defined")]
    V2Transport {
        /// The low nibble of the 14th byte.
        transport: u8,
    },
    /// A v2 header declaring more bytes than the parser's maximum; refused from the 16-byte
    /// fixed part alone, before any of them is buffered.
    #[error("PROXY v2 header of {len} bytes exceeds the maximum of {max} bytes")]
    V2TooLong {
        /// The whole header's declared length (16 + the length field).
        len: usize,
        /// The parser's maximum.
        max: usize,
    },
    /// A v2 length field too small for the addresses its family requires.
    #[error("PROXY v2 length {len} cannot hold the {need} address bytes of its family")]
    V2AddressesTruncated {
        /// The length field.
        len: u16,
        /// The bytes the family's addresses and ports take.
        need: u16,
    },
    /// A v2 TLV whose length runs past the end of the header, or a tail too short for a TLV,
    /// at `offset` from the header's start.
    #[error("PROXY v2 TLV at offset {offset} runs past the end of the header")]
    V2TlvOverrun {
        /// Position of the TLV's type byte.
        offset: usize,
    },
}

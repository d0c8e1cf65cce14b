//! The HTTP/1.1 message head shared by both handshake sides: finding where it ends, splitting it
//! into lines and header fields, reading comma-separated token lists.
//! The scanner looks at each input byte once (a resume offset survives between calls), never
//! looks past the size limit, and accepts only CRLF line ends; nothing here allocates.

use thiserror::Error;

/// Default cap on a handshake head (request or response line plus headers plus the blank line).
pub const DEFAULT_MAX_HEAD: usize = 8 * 1024;

/// A refusal found while reading the head itself, before any WebSocket rule is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeadError {
    /// More than `max` bytes arrived without the blank line that ends the head.
    #[error("header section exceeds {max} bytes")]
    TooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A line feed not preceded by a carriage return, at `offset` from the start of the head.
    #[error("bare line feed at byte {offset}; lines must end with CRLF")]
    BareLineFeed {
        /// Position of the line feed.
        offset: usize,
    },
    /// A header line starting with whitespace (obsolete line folding, RFC 7230 §3.2.4).
    #[error("folded header line")]
    FoldedHeader,
    /// A header line with no colon.
    #[error("header line without a colon")]
    MissingColon,
    /// A header name that is empty or holds a byte outside the token set (including
    /// whitespace before the colon).
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A header value holding a control byte other than horizontal tab.
    #[error("control character in header value")]
    InvalidHeaderValue,
}

/// Finds the end of a head across calls, each call looking only at bytes it has not seen.
///
/// Bare LF is refused rather than accepted as a line end: the bytes right behind the head are
/// WebSocket frames, so the head must end where every proxy in front of us thinks it ends, and
/// CRLF CRLF is the only terminator all of them agree on.
#[derive(Debug, Clone)]
pub(crate) struct HeadScanner {
    /// Bytes of the caller's buffer already examined; the buffer must keep them between calls.
    scanned: usize,
    max: usize,
}

impl HeadScanner {
    pub(crate) const fn new(max: usize) -> Self {
        HeadScanner { scanned: 0, max }
    }

    /// The length of the head (blank line included) once `buf` holds all of it.
    ///
    /// Refuses as soon as `buf` is longer than the limit with no blank line inside the limit, so
    /// a caller that checks after every read never holds more than one read beyond `max`.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HeadError> {
        let window = &buf[..buf.len().min(self.max)];
        let mut from = self.scanned.min(window.len());
        while let Some(pos) = window[from..].iter().position(|&b| b == b'\n') {
            let lf = from + pos;
            if lf == 0 || window[lf - 1] != b'\r' {
                self.scanned = 0;
                return Err(HeadError::BareLineFeed { offset: lf });
            }
            // Every earlier LF was checked to follow a CR, so LF two bytes back means CRLF CRLF.
            if lf >= 3 && window[lf - 2] == b'\n' {
                self.scanned = 0;
                return Ok(Some(lf + 1));
            }
            from = lf + 1;
        }
        if buf.len() > self.max {
            self.scanned = 0;
            return Err(HeadError::TooLarge { max: self.max });
        }
        self.scanned = window.len();
        Ok(None)
    }
}

/// The lines of a complete head, start line first, without their CRLF and without the blank
/// line. Relies on [`HeadScanner`] having refused bare LFs.
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub(crate) fn new(head: &'a [u8]) -> Self {
        Lines {
            rest: head.strip_suffix(b"\r\n").unwrap_or(head),
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&self.rest[..lf], &self.rest[lf + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// One header line split into its name and its value without surrounding whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl<'a> Field<'a> {
    pub(crate) fn parse(line: &'a [u8]) -> Result<Self, HeadError> {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(HeadError::FoldedHeader);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HeadError::MissingColon)?;
        let name = &line[..colon];
        if !is_token(name) {
            return Err(HeadError::InvalidHeaderName);
        }
        let value = trim_whitespace(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeadError::InvalidHeaderValue);
        }
        Ok(Field { name, value })
    }

    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value as text, when it is all ASCII (obs-text is legal HTTP but never legal in the
    /// fields we expose).
    pub(crate) fn ascii_value(&self) -> Option<&'a str> {
        if self.value.is_ascii() {
            std::str::from_utf8(self.value).ok()
        } else {
            None
        }
    }
}

/// `tchar` of RFC 7230 §3.2.6: visible ASCII except delimiters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_byte(b))
}

pub(crate) fn trim_whitespace(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// The non-empty elements of an RFC 7230 §7 comma-separated list (empty elements are legal
/// and skipped).
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_whitespace)
        .filter(|item| !item.is_empty())
}

/// Whether a token list holds `token`, compared ASCII case-insensitively.
pub(crate) fn list_contains(value: &[u8], token: &str) -> bool {
    list_items(value).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// `HTTP/x.y` as `(x, y)`, or `None` when it is not that shape.
pub(crate) fn parse_http_version(s: &[u8]) -> Option<(u8, u8)> {
    match s {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Some((major - b'0', minor - b'0'))
        }
        _ => None,
    }
}

/// HTTP/1.1 or a later 1.x: the upgrade mechanism does not exist in 1.0 and is forbidden in 2.
pub(crate) fn is_upgradable_version((major, minor): (u8, u8)) -> bool {
    major == 1 && minor >= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_the_blank_line_and_ignores_what_follows() {
        let mut scanner = HeadScanner::new(64);
        assert_eq!(
            scanner.scan(b"GET / HTTP/1.1\r\nA: b\r\n\r\nframe"),
            Ok(Some(24))
        );
    }

    #[test]
    fn scanner_resumes_across_a_terminator_split_in_every_place() {
        let input = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        for cut in 0..input.len() {
            let mut scanner = HeadScanner::new(64);
            assert_eq!(scanner.scan(&input[..cut]), Ok(None), "cut {cut}");
            assert_eq!(scanner.scan(input), Ok(Some(input.len())), "cut {cut}");
        }
    }

    #[test]
    fn scanner_resume_offset_skips_bytes_already_seen() {
        let mut scanner = HeadScanner::new(64);
        assert_eq!(scanner.scan(b"GET / HTTP/1.1\r\nA: b\r"), Ok(None));
        assert_eq!(scanner.scanned, 21);
    }

    #[test]
    fn scanner_refuses_bare_lf() {
        let mut scanner = HeadScanner::new(64);
        assert_eq!(
            scanner.scan(b"GET / HTTP/1.1\nHost: a\n\n"),
            Err(HeadError::BareLineFeed { offset: 14 })
        );
        assert_eq!(
            HeadScanner::new(64).scan(b"\n"),
            Err(HeadError::BareLineFeed { offset: 0 })
        );
    }

    #[test]
    fn scanner_refuses_as_soon_as_the_limit_is_passed() {
        let mut scanner = HeadScanner::new(16);
        assert_eq!(scanner.scan(&[b'a'; 16]), Ok(None));
        assert_eq!(
            scanner.scan(&[b'a'; 17]),
            Err(HeadError::TooLarge { max: 16 })
        );
    }

    #[test]
    fn scanner_accepts_a_head_ending_exactly_at_the_limit() {
        let head = b"GET / HTTP/1.1\r\n\r\n";
        let mut scanner = HeadScanner::new(head.len());
        let mut input = head.to_vec();
        input.extend_from_slice(b"more bytes than the limit");
        assert_eq!(scanner.scan(&input), Ok(Some(head.len())));
        let mut short = HeadScanner::new(head.len() - 1);
        assert_eq!(
            short.scan(&input),
            Err(HeadError::TooLarge {
                max: head.len() - 1
            })
        );
    }

    #[test]
    fn lines_drop_crlf_and_the_blank_line() {
        let lines: Vec<&[u8]> = Lines::new(b"GET / HTTP/1.1\r\nA: b\r\nC:\r\n\r\n").collect();
        assert_eq!(lines, [&b"GET / HTTP/1.1"[..], b"A: b", b"C:"]);
    }

    #[test]
    fn a_stray_cr_at_the_end_of_the_last_line_stays_in_the_line() {
        let lines: Vec<&[u8]> = Lines::new(b"GET / HTTP/1.1\r\nA: b\r\r\n\r\n").collect();
        assert_eq!(lines[1], b"A: b\r");
        assert_eq!(Field::parse(lines[1]), Err(HeadError::InvalidHeaderValue));
    }

    #[test]
    fn field_trims_optional_whitespace() {
        let field = Field::parse(b"Sec-WebSocket-Key: \t abc \t").unwrap();
        assert_eq!(field.name, b"Sec-WebSocket-Key");
        assert_eq!(field.value, b"abc");
        assert!(field.is("sec-websocket-key"));
        assert_eq!(Field::parse(b"A:").unwrap().value, b"");
    }

    #[test]
    fn field_refusals() {
        assert_eq!(Field::parse(b" A: b"), Err(HeadError::FoldedHeader));
        assert_eq!(Field::parse(b"A b"), Err(HeadError::MissingColon));
        assert_eq!(Field::parse(b"A : b"), Err(HeadError::InvalidHeaderName));
        assert_eq!(Field::parse(b": b"), Err(HeadError::InvalidHeaderName));
        assert_eq!(Field::parse(b"A: b\0c"), Err(HeadError::InvalidHeaderValue));
        assert_eq!(
            Field::parse(b"A: b\x7f"),
            Err(HeadError::InvalidHeaderValue)
        );
    }

    #[test]
    fn field_ascii_value_refuses_obs_text() {
        assert_eq!(Field::parse(b"A: caf\xc3\xa9").unwrap().ascii_value(), None);
        assert_eq!(
            Field::parse(b"A: cafe").unwrap().ascii_value(),
            Some("cafe")
        );
    }

    #[test]
    fn token_lists_are_case_insensitive_and_skip_empty_elements() {
        assert!(list_contains(b"keep-alive, Upgrade", "upgrade"));
        assert!(list_contains(b" ,\tUPGRADE ,", "upgrade"));
        assert!(!list_contains(b"upgrade-not", "upgrade"));
        assert!(!list_contains(b"", "upgrade"));
        let items: Vec<&[u8]> = list_items(b"a,, b ,\t").collect();
        assert_eq!(items, [&b"a"[..], b"b"]);
    }

    #[test]
    fn http_versions() {
        assert_eq!(parse_http_version(b"HTTP/1.1"), Some((1, 1)));
        assert_eq!(parse_http_version(b"HTTP/1.10"), None);
        assert_eq!(parse_http_version(b"http/1.1"), None);
        assert!(is_upgradable_version((1, 2)));
        assert!(!is_upgradable_version((1, 0)));
        assert!(!is_upgradable_version((2, 0)));
    }
}

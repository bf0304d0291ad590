//! Farewells: the reason one side gives as it cuts a connection off, so
//! that the other side's error says why ([`RecvError::CutOff`],
//! [`SendError::CutOff`]) instead of only that the connection broke.
//!
//! A worker cuts a caller off when a request does not decode, when the
//! caller read none of its replies for the reply timeout, or when a frame
//! breaks the ring's or the socket's framing; a caller cuts a worker off for
//! an invalid reply. Over shared memory the reason travels on the
//! connection's bootstrap Unix socket (which carries nothing else after the
//! hello): `FAREWELL_MAGIC`, the reason's length (`u16`, little-endian), the
//! reason's UTF-8 bytes, at most [`MAX_FAREWELL`]. Over TCP it is the close
//! frame (`KIND_CLOSE`) with the reason as its payload (an orderly close
//! has none).
//!
//! Best effort, never waiting: a farewell that does not fit the socket's
//! buffer now, or a TCP connection whose output is backed up (its caller
//! reads nothing), goes without one, and the other side reports the break
//! as before. A farewell is hostile input like any other: read only once
//! the connection has ended, bounded, and made printable; a forged one can
//! only change the words of an error for a connection that is over.
//!
//! [`RecvError::CutOff`]: super::RecvError::CutOff
//! [`SendError::CutOff`]: super::SendError::CutOff

/// The most bytes of a reason sent (a longer one is cut at a character
/// boundary) or accepted.
pub(crate) const MAX_FAREWELL: usize = 512;

/// The first bytes of a farewell on a shared-memory connection's bootstrap
/// socket.
const FAREWELL_MAGIC: [u8; 4] = *b"SWBY";

/// `reason` cut to at most [`MAX_FAREWELL`] bytes, at a character boundary.
pub(crate) fn clip(reason: &str) -> &str {
    if reason.len() <= MAX_FAREWELL {
        return reason;
    }
    let mut end = MAX_FAREWELL;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A received reason as text: invalid UTF-8 replaced, control characters
/// (a terminal's escape sequences, line breaks) shown as `\u{…}`.
pub(crate) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_FAREWELL)])
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The bytes of a farewell on a bootstrap socket.
pub(crate) fn encode(reason: &str) -> Vec<u8> {
    let reason = clip(reason);
    let mut out = Vec::with_capacity(FAREWELL_MAGIC.len() + 2 + reason.len());
    out.extend_from_slice(&FAREWELL_MAGIC);
    out.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The reason in `bytes` read from a bootstrap socket, if they start with a
/// whole farewell (anything else — stray bytes, a cut-short or oversized
/// one — is no farewell).
pub(crate) fn decode(bytes: &[u8]) -> Option<String> {
    let rest = bytes.strip_prefix(&FAREWELL_MAGIC)?;
    let (len, reason) = rest.split_first_chunk::<2>()?;
    let len = u16::from_le_bytes(*len) as usize;
    if len > MAX_FAREWELL {
        return None;
    }
    reason.get(..len).map(printable)
}

/// The last whole farewell in `bytes` read from a bootstrap socket, after
/// whatever came before it there (a store's descriptor hand-offs, which
/// share its socket, left unread).
pub(crate) fn find_last(bytes: &[u8]) -> Option<String> {
    (0..bytes.len().saturating_sub(FAREWELL_MAGIC.len() - 1))
        .rev()
        .filter(|&i| bytes[i..].starts_with(&FAREWELL_MAGIC))
        .find_map(|i| decode(&bytes[i..]))
}

/// The most bytes read from a bootstrap socket to find a farewell behind
/// other unread bytes.
pub(crate) const MAX_SCAN: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_farewell_round_trips_and_nothing_else_decodes() {
        assert_eq!(
            decode(&encode("invalid request: bad")).as_deref(),
            Some("invalid request: bad")
        );
        let long = "é".repeat(400);
        let clipped = decode(&encode(&long)).unwrap();
        assert!(clipped.len() <= MAX_FAREWELL && long.starts_with(&clipped));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"SWBY\x05\x00abc"), None, "cut short");
        assert_eq!(decode(b"XXXX\x01\x00a"), None, "no magic");
        let mut over = b"SWBY".to_vec();
        over.extend_from_slice(&(MAX_FAREWELL as u16 + 1).to_le_bytes());
        over.resize(over.len() + MAX_FAREWELL + 1, b'a');
        assert_eq!(decode(&over), None, "over the maximum");
        assert_eq!(
            decode(b"SWBY\x04\x00a\x1b[\n").as_deref(),
            Some("a\\u{1b}[\\u{a}")
        );
        assert_eq!(printable(&[0xff, b'x']), "\u{fffd}x");
        // Behind other bytes (descriptor hand-offs left unread).
        let mut behind = b"SWSEGS\x01junkSWBY".to_vec();
        behind.extend(encode("first"));
        behind.extend(encode("second"));
        assert_eq!(find_last(&behind).as_deref(), Some("second"));
        assert_eq!(find_last(b"SWBY\xff"), None);
        assert_eq!(find_last(b""), None);
    }
}

//! Naming rules for sessions and segments.

use super::error::{Result, ShmError};

/// Longest session or segment name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

fn check(what: &'static str, name: &str) -> Result<()> {
    let fail = |reason| {
        Err(ShmError::InvalidName {
            what,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 64 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return fail("only [A-Za-z0-9_.-] allowed");
    }
    if name.starts_with('.') {
        // Also rules out "." and "..", and keeps the dot-prefixed names free
        // for the lock files' temporary names.
        return fail("must not start with '.'");
    }
    Ok(())
}

/// Checks a session name: `[A-Za-z0-9_.-]`, 1..=64 bytes, no leading `.`.
pub fn validate_session_name(name: &str) -> Result<()> {
    check("session", name)
}

/// Checks a segment name: like a session name, and it must not end in
/// `.lock` (those names are the per-process liveness lock files).
pub fn validate_segment_name(name: &str) -> Result<()> {
    check("segment", name)?;
    if name.ends_with(".lock") {
        return Err(ShmError::InvalidName {
            what: "segment",
            name: name.to_owned(),
            reason: "names ending in .lock are reserved for lock files",
        });
    }
    Ok(())
}

/// File-name prefix of a process's lock file (`proc-<pid>-<hex>.lock`).
pub const LOCK_PREFIX: &str = "proc-";
/// File-name suffix of a process's lock file.
pub const LOCK_SUFFIX: &str = ".lock";

/// Whether `s` has the shape of a per-process lock-file name
/// (`proc-<pid>-<hex>.lock`).
pub(crate) fn is_lock_file_name(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN
        && s.starts_with(LOCK_PREFIX)
        && s.ends_with(LOCK_SUFFIX)
        && s.len() > LOCK_PREFIX.len() + LOCK_SUFFIX.len()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

/// Temporary name of a lock file before it is locked and renamed.
pub(crate) const TMP_LOCK_PREFIX: &str = ".proc-";
/// Suffix of [`TMP_LOCK_PREFIX`] names.
pub(crate) const TMP_LOCK_SUFFIX: &str = ".lock.tmp";
/// The empty file that marks a directory as a shmwire session.
pub const SESSION_MARKER: &str = ".shmwire-session";
/// The session token (written by the node layer, removed with the session).
pub const TOKEN_FILE: &str = ".token";
/// Prefix of a node directory entry (`.w-<worker id>.entry`), which holds
/// its own `flock` for as long as its worker is registered.
pub const ENTRY_PREFIX: &str = ".w-";
/// Suffix of a node directory entry.
pub const ENTRY_SUFFIX: &str = ".entry";
/// The node's lock (`node::Node`): held exclusively by the session's one
/// node for its life, so a second node is refused by the kernel; removed
/// by the cleanup pass once its lock is free.
pub const NODE_LOCK_FILE: &str = ".node.lock";
/// The lock that serialises worker-name claims (`node::Directory::
/// register`): an exclusive `flock` on it is held only around the check
/// that a name is free and the writing of the entry that claims it. It
/// stays for the session's life (nobody holds it between registrations)
/// and goes with the session, as the token does.
pub const NAMES_LOCK_FILE: &str = ".names.lock";
/// Prefix of a worker name's claim (`.n-<32 hex>.claim`, the hex a hash
/// of the name; `node::Directory::register`): an exclusive `flock` on it
/// is held by the worker that claimed the name for as long as its
/// registration lives, so a reader can tell the entry of the name's
/// claimant from one merely written under the name. A worker that exits
/// removes its own; a killed one's stays, empty, for the name's next
/// claimant, and goes with the session (as [`NAMES_LOCK_FILE`] does).
pub const CLAIM_PREFIX: &str = ".n-";
/// Suffix of a worker name's claim.
pub const CLAIM_SUFFIX: &str = ".claim";
/// Tag of a bootstrap socket: `.s-<owner stem>-<n>.sock`.
pub const SOCKET_TAG: &str = "s";
/// Tag of a temporary file: `.tmp-<owner stem>-<what>-<n>`.
pub const TMP_TAG: &str = "tmp";

/// What a name in a session directory is, by the naming rules of
/// everything shmwire creates there. Names that fit none are
/// [`FileKind::Foreign`] and never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// [`SESSION_MARKER`].
    Marker,
    /// [`TOKEN_FILE`].
    Token,
    /// `proc-<stem>.lock`: a process's liveness lock.
    OwnerLock(String),
    /// `.proc-<stem>.lock.tmp`: a lock file being created (self-locked).
    OwnerLockTmp,
    /// `.w-<id>.entry`: a directory entry (self-locked).
    Entry,
    /// [`NODE_LOCK_FILE`]: the node's lock (self-locked).
    NodeLock,
    /// [`NAMES_LOCK_FILE`]: locked only while a name is claimed; removed
    /// with the session.
    NamesLock,
    /// `.n-<hex>.claim`: a worker name's claim (self-locked).
    NameClaim,
    /// `.s-<stem>-…` or `.tmp-<stem>-…`: owned by `proc-<stem>.lock`.
    Owned(String),
    /// A segment name (ownership in its header).
    Segment,
    /// Anything else.
    Foreign,
}

/// Whether `s` is an owner stem `<pid>-<8 to 16 hex>` (the middle of a
/// lock file's name; this build makes 8 hex digits, older ones 16).
fn is_stem(s: &str) -> bool {
    let Some((pid, hex)) = s.split_once('-') else {
        return false;
    };
    !pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit())
        && (8..=16).contains(&hex.len())
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The stem `<pid>-<hex>` at the start of `s`, if one is there followed by
/// `-`.
fn stem_prefix(s: &str) -> Option<&str> {
    let dash = s.find('-')?;
    let end = dash + 1 + s[dash + 1..].find('-')?;
    let stem = &s[..end];
    is_stem(stem).then_some(stem)
}

/// Classifies one directory entry name of a session directory.
pub(crate) fn classify(name: &str) -> FileKind {
    match name {
        SESSION_MARKER => return FileKind::Marker,
        TOKEN_FILE => return FileKind::Token,
        NODE_LOCK_FILE => return FileKind::NodeLock,
        NAMES_LOCK_FILE => return FileKind::NamesLock,
        _ => {}
    }
    if let Some(stem) = name
        .strip_prefix(LOCK_PREFIX)
        .and_then(|r| r.strip_suffix(LOCK_SUFFIX))
    {
        return if is_stem(stem) {
            FileKind::OwnerLock(stem.to_owned())
        } else {
            FileKind::Foreign
        };
    }
    if let Some(stem) = name
        .strip_prefix(TMP_LOCK_PREFIX)
        .and_then(|r| r.strip_suffix(TMP_LOCK_SUFFIX))
    {
        return if is_stem(stem) {
            FileKind::OwnerLockTmp
        } else {
            FileKind::Foreign
        };
    }
    if let Some(hash) = name
        .strip_prefix(CLAIM_PREFIX)
        .and_then(|r| r.strip_suffix(CLAIM_SUFFIX))
    {
        return if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            FileKind::NameClaim
        } else {
            FileKind::Foreign
        };
    }
    if let Some(id) = name
        .strip_prefix(ENTRY_PREFIX)
        .and_then(|r| r.strip_suffix(ENTRY_SUFFIX))
    {
        return if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            FileKind::Entry
        } else {
            FileKind::Foreign
        };
    }
    for tag in [SOCKET_TAG, TMP_TAG] {
        if let Some(rest) = name
            .strip_prefix('.')
            .and_then(|r| r.strip_prefix(tag))
            .and_then(|r| r.strip_prefix('-'))
        {
            if let Some(stem) = stem_prefix(rest) {
                return FileKind::Owned(stem.to_owned());
            }
        }
    }
    if validate_segment_name(name).is_ok() {
        return FileKind::Segment;
    }
    FileKind::Foreign
}

/// The lock-file name of owner `stem`.
pub(crate) fn lock_name(stem: &str) -> String {
    format!("{LOCK_PREFIX}{stem}{LOCK_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "ring-0", "A_b.c-9", &"x".repeat(64)] {
            validate_segment_name(ok).unwrap();
            validate_session_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(65),
            "a\0",
        ] {
            assert!(matches!(
                validate_segment_name(bad),
                Err(ShmError::InvalidName { .. })
            ));
            assert!(matches!(
                validate_session_name(bad),
                Err(ShmError::InvalidName { .. })
            ));
        }
        assert!(validate_segment_name("proc-1-2.lock").is_err());
        assert!(validate_session_name("x.lock").is_ok());
    }

    #[test]
    fn classifies_what_shmwire_makes_and_nothing_else() {
        let stem = "123-0123456789abcdef";
        assert_eq!(classify(&lock_name(stem)), FileKind::OwnerLock(stem.into()));
        assert_eq!(
            classify(".proc-123-0123456789abcdef.lock.tmp"),
            FileKind::OwnerLockTmp
        );
        assert_eq!(
            classify(&format!(".s-{stem}-0.sock")),
            FileKind::Owned(stem.into())
        );
        assert_eq!(
            classify(&format!(".tmp-{stem}-token-3")),
            FileKind::Owned(stem.into())
        );
        assert_eq!(classify(".w-0a0b.entry"), FileKind::Entry);
        assert_eq!(classify(".token"), FileKind::Token);
        assert_eq!(classify(".node.lock"), FileKind::NodeLock);
        assert_eq!(classify(".names.lock"), FileKind::NamesLock);
        assert_eq!(classify(".shmwire-session"), FileKind::Marker);
        assert_eq!(classify("ring-1-2-c2s"), FileKind::Segment);
        for foreign in [
            ".other",
            ".s-12-34.sock",
            ".tmp-x",
            ".w-zz.entry",
            "proc-1-2.lock",
            ".proc-x.lock.tmp",
            "..",
            "a b",
        ] {
            assert_eq!(classify(foreign), FileKind::Foreign, "{foreign}");
        }
    }
}

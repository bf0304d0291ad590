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
pub(crate) const LOCK_PREFIX: &str = "proc-";
/// File-name suffix of a process's lock file.
pub(crate) const LOCK_SUFFIX: &str = ".lock";

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
}

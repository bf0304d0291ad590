//! The session token's file: `<session dir>/.token`, 16 random bytes,
//! mode 0600, created once per session and removed with the session (by
//! the cleanup pass, once no process of the session lives).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::shm::{temp_path_in, Session, ShmError};
use crate::transport::SessionToken;

/// File name of the token inside the session directory.
pub const TOKEN_FILE: &str = crate::shm::TOKEN_FILE;

/// Why the session token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A file operation failed (the temporary file, if any, was removed).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`"read token"`, `"write token"`, …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The token file exists but does not hold 16 bytes.
    #[error("session token file {path} is corrupted ({len} bytes, expected 16)")]
    Corrupted {
        /// The token file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The token file holds another session token than the live
    /// process's ([`restore_token`]): it was removed and a process started
    /// since made a new one; processes started from now on get that one
    /// and cannot reach the live processes of the old one. Not
    /// overwritten (two live sets of processes would fight over the file).
    #[error(
        "session token file {path} holds another token than this process's: it was removed and \
         remade; processes started since cannot reach this one"
    )]
    Replaced {
        /// The token file.
        path: PathBuf,
    },
    /// This process could not take its lock in the session directory (the
    /// temporary file is named after it).
    #[error("session {0}")]
    Session(#[from] ShmError),
    /// The token file is damaged and the live processes of the session,
    /// which hold the token, did not put it back within
    /// [`TOKEN_REPAIR_WAIT`] (one busy in a long task, or stopped): a new
    /// token would cut every process started from now on off from them.
    #[error(
        "{damage}; other processes of the session live and none put it back within {:?} (a \
         worker or node busy or stopped, a program that keeps no token, or others starting \
         at the same time): try again, or stop them first",
        TOKEN_REPAIR_WAIT
    )]
    Damaged {
        /// What is wrong with the file.
        damage: Box<TokenError>,
    },
}

/// Reads the token of `session`, creating it (exclusively: concurrent
/// callers agree on one token) if it does not exist yet.
///
/// A damaged token file — not 16 bytes, or a FIFO, a symbolic link or
/// anything else that is not a regular file under its name; never a
/// creation in progress, which links a whole file into place — is waited
/// for while other processes of the session live (they hold the token and
/// put it back within about a second: the node every round, a
/// [`Worker`](crate::worker::Worker) every second), at most
/// [`TOKEN_REPAIR_WAIT`]; if they do not, the damage stays theirs (a new
/// token would split the session: they would refuse every caller started
/// from now on) and the error says so. With nobody else in the session the
/// damage is removed at once and a new token made, under the session
/// directory's exclusive lock (one replacer at a time), with a warning
/// (before, every start failed until someone removed the file by hand). A
/// directory under the name is left: it may hold someone's files.
///
/// # Errors
/// [`TokenError::Io`] naming the path and the operation (on a full file
/// system nothing is left behind); [`TokenError::Corrupted`] or the
/// `InvalidData` [`TokenError::Io`] of damage that could not be replaced
/// (a directory, the session's lock held by a cleanup pass throughout);
/// [`TokenError::Damaged`] when live processes did not put it back.
pub fn load_or_create_token(session: &Session) -> Result<SessionToken, TokenError> {
    match load_or_create_in(session.dir()) {
        Err(e) if is_damage(&e) => replace_damage(session, e),
        r => r,
    }
}

/// How long [`load_or_create_token`] waits for the live processes of a
/// session to put its damaged token file back (then fails with
/// [`TokenError::Damaged`]): 3 s.
pub const TOKEN_REPAIR_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether `e` says the token file is damaged (wrong length, not a
/// regular file, a symbolic link) rather than unreadable.
fn is_damage(e: &TokenError) -> bool {
    match e {
        TokenError::Corrupted { .. } => true,
        TokenError::Io { source, .. } => {
            source.kind() == io::ErrorKind::InvalidData || crate::sys::fs::is_eloop(source)
        }
        _ => false,
    }
}

/// [`load_or_create_token`] after `first`, a damaged token file.
fn replace_damage(session: &Session, first: TokenError) -> Result<SessionToken, TokenError> {
    let dir = session.dir();
    if session.others_live() {
        let deadline = std::time::Instant::now() + TOKEN_REPAIR_WAIT;
        let path = dir.join(TOKEN_FILE);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
            // Only read: a name missing for a moment is being put back by
            // its owner, never ours to fill (the re-attack on `3bad844`: a
            // starter that created a token then split the session).
            match crate::sys::fs::read_small_regular(&path, 16) {
                Ok(b) if b.len() == 16 => {
                    let mut t = [0u8; 16];
                    t.copy_from_slice(&b);
                    return Ok(SessionToken(t));
                }
                _ => {}
            }
        }
        return Err(TokenError::Damaged {
            damage: Box::new(first),
        });
    }
    let Some(_locked) = session.lock_dir_exclusive()? else {
        return Err(first);
    };
    // Again under the lock: another process may have replaced it first,
    // or started meanwhile (its token is theirs to put back).
    match load_or_create_in(dir) {
        Err(e) if is_damage(&e) => {}
        r => return r,
    }
    if session.others_live() {
        return Err(TokenError::Damaged {
            damage: Box::new(first),
        });
    }
    let path = dir.join(TOKEN_FILE);
    let removed = match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Err(first),
        Ok(_) => fs::remove_file(&path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(|source| TokenError::Io {
        op: "remove the damaged token",
        path: path.clone(),
        source,
    })?;
    tracing::warn!(
        path = %path.display(),
        damage = %first,
        "the session token file was damaged and nobody put it back: replaced with a new token"
    );
    load_or_create_in(dir)
}

/// The token file a process found holding its token, kept open (one
/// descriptor), so that [`restore_token`] tells a token rewritten in place
/// — the same file, other bytes: damage — from a token another process
/// made (always a new file, linked into place). Kept open, the file's
/// inode cannot be reused by a newcomer's while its name is gone.
/// [`TokenFile::default`] knows no file.
#[derive(Debug, Default)]
pub struct TokenFile(Option<fs::File>);

impl TokenFile {
    /// The token file of `session` as it is now (call right after
    /// [`load_or_create_token`]).
    pub fn of(session: &Session) -> Self {
        Self::open(&session.dir().join(TOKEN_FILE))
    }

    fn open(path: &Path) -> Self {
        Self(crate::sys::fs::open_regular(path).ok())
    }

    /// Whether `path` still names this file.
    fn is(&self, path: &Path) -> bool {
        self.0
            .as_ref()
            .is_some_and(|f| crate::sys::liveness::same_file(f, path))
    }
}

/// Writes `session`'s token file again with `token` (the token this live
/// process uses) if a stray `rm`, truncation or rename took it: without
/// it a process started now makes a new token and neither reaches nor is
/// reached by the live ones. `Ok(true)` if it wrote it; `Ok(false)` while
/// it holds `token`. Costs one small read. The node checks it every round,
/// a [`Worker`](crate::worker::Worker) every second.
///
/// A process started between the loss and the check made a new token of
/// its own: with `replace_other` (the node, the session's authority,
/// passes it) that token is replaced by `token` — the newcomer's
/// connections then fail with a bad-token refusal, and any process started
/// later gets `token` again; without it (a worker), that is
/// [`TokenError::Replaced`] and the file is left as it is — unless it is
/// still `file`, the file this process found holding `token`, with other
/// bytes written over them in place: damage, not another token, written
/// again (before, a worker called it "removed and remade" and every new
/// caller was refused for a bad token for the worker's life). `file` is
/// updated to the file written.
///
/// # Errors
/// [`TokenError::Replaced`] (above); [`TokenError::Io`] when the file
/// cannot be written.
pub fn restore_token(
    session: &Session,
    token: &SessionToken,
    replace_other: bool,
    file: &mut TokenFile,
) -> Result<bool, TokenError> {
    let dir = session.dir();
    let path = dir.join(TOKEN_FILE);
    match crate::sys::fs::read_small_regular(&path, 16) {
        Ok(b) if b == token.0 => {
            // Our token in another file (copied and renamed over ours):
            // that file is the one to keep from now on.
            if !file.is(&path) {
                *file = TokenFile::open(&path);
            }
            return Ok(false);
        }
        Ok(b) if b.len() == 16 && !replace_other && !file.is(&path) => {
            return Err(TokenError::Replaced { path })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // A failure to read a file that may be the token (out of
        // descriptors, a permission) removes nothing.
        Err(e)
            if !(e.kind() == io::ErrorKind::InvalidData
                || crate::sys::liveness::is_not_a_lock_file(&e)) =>
        {
            return Err(TokenError::Io {
                op: "read token",
                path,
                source: e,
            })
        }
        // Truncated, too long, or no regular file under the name (a FIFO,
        // a symbolic link, a socket; a directory makes the rename fail):
        // not a token; ours takes its place in one step (as it does of
        // another token, with `replace_other`).
        Ok(_) | Err(_) => {
            rename_new_token(dir, &path, token)?;
            *file = TokenFile::open(&path);
            return Ok(true);
        }
    }
    match link_new_token(dir, &path, token)? {
        true => {
            *file = TokenFile::open(&path);
            Ok(true)
        }
        // A process made one meanwhile: ours, or another (replaced at the
        // next check, with `replace_other`).
        false => match load_or_create_in(dir)? {
            t if t.0 == token.0 => Ok(false),
            _ => Err(TokenError::Replaced { path }),
        },
    }
}

/// Writes `token` to a temporary file and links it to `path`; `Ok(false)`
/// if `path` exists (the first creator wins).
fn link_new_token(dir: &Path, path: &Path, token: &SessionToken) -> Result<bool, TokenError> {
    let tmp = temp_token(dir, token)?;
    // `hard_link` fails if the token exists.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(TokenError::Io {
            op: "link token",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Puts `token` in place of the damaged file at `path` in one step
/// (`rename` over it): the name is never missing meanwhile, so a process
/// starting then never makes a token of its own (the re-attack on
/// `3bad844` split a session in the window of a remove-then-link).
fn rename_new_token(dir: &Path, path: &Path, token: &SessionToken) -> Result<(), TokenError> {
    let tmp = temp_token(dir, token)?;
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        TokenError::Io {
            op: "put the token in place of the damaged file",
            path: path.to_owned(),
            source,
        }
    })
}

/// A new file in `dir` holding `token`, synced (a temporary name owned by
/// this process's lock: if it dies before it is gone, cleanup removes it).
fn temp_token(dir: &Path, token: &SessionToken) -> Result<PathBuf, TokenError> {
    let tmp = temp_path_in(dir, "token")?;
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ("create token", e))?;
        f.write_all(&token.0).map_err(|e| ("write token", e))?;
        f.sync_all().map_err(|e| ("sync token", e))?;
        Ok::<_, (&'static str, io::Error)>(())
    })();
    if let Err((op, source)) = written {
        let _ = fs::remove_file(&tmp);
        return Err(TokenError::Io {
            op,
            path: tmp,
            source,
        });
    }
    Ok(tmp)
}

/// [`load_or_create_token`] for the session directory `dir`.
pub fn load_or_create_in(dir: &Path) -> Result<SessionToken, TokenError> {
    let path = dir.join(TOKEN_FILE);
    loop {
        // Never follows, never blocks on a FIFO, refuses what is not a
        // regular file (a FIFO here hung the node before).
        match crate::sys::fs::read_small_regular(&path, 16) {
            Ok(b) if b.len() == 16 => {
                let mut t = [0u8; 16];
                t.copy_from_slice(&b);
                return Ok(SessionToken(t));
            }
            // A creator writes a temporary file and links it into place, so
            // a short file is never a creation in progress.
            Ok(b) => return Err(TokenError::Corrupted { path, len: b.len() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TokenError::Io {
                    op: "read token",
                    path,
                    source,
                })
            }
        }
        let token = SessionToken::random().map_err(|source| TokenError::Io {
            op: "generate token",
            path: path.clone(),
            source,
        })?;
        // Everybody who lost the race re-reads the winner's token.
        if link_new_token(dir, &path, &token)? {
            return Ok(token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_nobody_puts_back_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let session = Session::open_in(tmp.path().join("root"), "d").unwrap();
        let path = session.dir().join(TOKEN_FILE);
        // Nobody else lives in the session: replaced at once.
        fs::write(&path, b"short").unwrap();
        let t = load_or_create_token(&session).unwrap();
        assert_eq!(fs::read(&path).unwrap(), t.0);
        fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success());
        let t = load_or_create_token(&session).unwrap();
        assert_eq!(fs::read(&path).unwrap(), t.0);
        // A directory may hold someone's files: left, an error.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"x").unwrap();
        assert!(load_or_create_token(&session).is_err());
        assert!(path.join("keep").exists());
        fs::remove_dir_all(&path).unwrap();
        assert_eq!(load_or_create_token(&session).unwrap().0.len(), 16);
    }

    #[test]
    fn a_lost_or_damaged_token_is_written_again_and_another_is_said() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let session = Session::open_in(&root, "t").unwrap();
        let token = load_or_create_token(&session).unwrap();
        let mut file = TokenFile::of(&session);
        let path = session.dir().join(TOKEN_FILE);
        let restore =
            |file: &mut TokenFile, replace| restore_token(&session, &token, replace, file);
        assert!(!restore(&mut file, false).unwrap(), "intact");
        // Removed, truncated, a directory's worth of junk: written again.
        fs::remove_file(&path).unwrap();
        assert!(restore(&mut file, false).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        fs::write(&path, b"short").unwrap();
        assert!(restore(&mut file, false).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/null", &path).unwrap();
        assert!(restore(&mut file, false).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        // Sixteen other bytes written over ours in place (the same file):
        // damage, written again.
        fs::write(&path, [9u8; 16]).unwrap();
        assert!(restore(&mut file, false).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        // Our token copied into a new file renamed over ours: that file is
        // the one kept from now on, so damage to it is written again too
        // (re-attack on `8744a0d`: it was taken for another token).
        let copy = session.dir().join("token-copy");
        fs::write(&copy, token.0).unwrap();
        fs::rename(&copy, &path).unwrap();
        assert!(!restore(&mut file, false).unwrap());
        fs::write(&path, [8u8; 16]).unwrap();
        assert!(restore(&mut file, false).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        // Another valid token in a new file (as another process makes
        // one): said by a worker, replaced by the node.
        fs::remove_file(&path).unwrap();
        fs::write(&path, [7u8; 16]).unwrap();
        assert!(matches!(
            restore(&mut file, false),
            Err(TokenError::Replaced { .. })
        ));
        assert_eq!(fs::read(&path).unwrap(), [7u8; 16]);
        assert!(restore(&mut file, true).unwrap());
        assert_eq!(fs::read(&path).unwrap(), token.0);
        assert_eq!(load_or_create_token(&session).unwrap().0, token.0);
        session.remove_all().unwrap();
    }
}

//! The one error enum of the segment layer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while creating, opening, inspecting or
/// cleaning up shared-memory segments and sessions.
///
/// Variants that come from validating a segment header carry the value that
/// was found, so a caller (or `shmwire inspect`) can say what is wrong with
/// a segment rather than only that something is.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The file system has no room for the segment's pages (a full tmpfs).
    /// Checked at creation — every page is reserved then — so a later write
    /// through the mapping can never fail with `SIGBUS`.
    #[error("no space for a {len}-byte segment at {path} (the file system is full)")]
    OutOfSpace {
        /// The segment file (removed again).
        path: PathBuf,
        /// Bytes asked for.
        len: u64,
        /// The OS error (`ENOSPC`).
        #[source]
        source: io::Error,
    },
    /// A session or segment name broke the naming rules
    /// (`[A-Za-z0-9_.-]`, 1..=64 bytes, not starting with `.`, not ending in
    /// `.lock`).
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// `"session"` or `"segment"`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// An operating-system call failed.
    #[error("{op} {}: {source}", crate::one_line(.path))]
    Io {
        /// The operation that failed (`"open"`, `"ftruncate"`, `"mmap"`, …).
        op: &'static str,
        /// The file or directory it was applied to (in the message on one
        /// line: [`crate::one_line`]).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `Segment::create` found a file of that name already there.
    #[error("segment {path} already exists")]
    AlreadyExists {
        /// The segment's path.
        path: PathBuf,
    },
    /// The session directory does not exist (returned by
    /// [`Session::attach_in`](super::Session::attach_in), which never creates one).
    #[error("session directory {path} does not exist")]
    SessionNotFound {
        /// The session directory.
        path: PathBuf,
    },
    /// `Segment::open` found no file of that name.
    #[error("segment {path} does not exist")]
    NotFound {
        /// The segment's path.
        path: PathBuf,
    },
    /// The segment exists but its creator has not published it yet (the
    /// init-state word is still zero, or the file is still empty).
    #[error("segment {path} is not initialised yet")]
    NotInitialized {
        /// The segment's path.
        path: PathBuf,
    },
    /// The init-state word holds neither "uninitialised" nor "ready".
    #[error("segment init-state word is {found:#x}, expected 0 or {expected:#x}")]
    BadInitState {
        /// The value found in the header.
        found: u32,
        /// The "ready" value.
        expected: u32,
    },
    /// The header does not start with the shmwire magic.
    #[error("segment magic is {found:#018x}, expected {expected:#018x}")]
    BadMagic {
        /// The value found in the header.
        found: u64,
        /// The shmwire magic.
        expected: u64,
    },
    /// The segment was laid out by a different layout version.
    #[error("segment layout version {found}, this build understands {expected}")]
    VersionMismatch {
        /// The version found in the header.
        found: u32,
        /// The version this build writes and reads.
        expected: u32,
    },
    /// The segment holds a different kind of payload than the caller asked for.
    #[error("segment kind {found:#x}, expected {expected:#x}")]
    WrongKind {
        /// The kind found in the header.
        found: u32,
        /// The kind the caller asked for.
        expected: u32,
    },
    /// The sizes in the header disagree with each other or with the file.
    #[error("segment size mismatch: header says {header} bytes, file has {file} bytes")]
    WrongSize {
        /// Total size recorded in the header (0 when the file is too small to
        /// hold a header at all).
        header: u64,
        /// Size of the file on disk.
        file: u64,
    },
    /// The payload offset/length recorded in the header is out of bounds or
    /// not the layout this build uses.
    #[error("segment layout invalid: {reason} (payload offset {payload_offset}, payload length {payload_len}, total {total_size})")]
    BadLayout {
        /// Which check failed.
        reason: &'static str,
        /// Payload offset from the header.
        payload_offset: u64,
        /// Payload length from the header.
        payload_len: u64,
        /// Total size from the header.
        total_size: u64,
    },
    /// The file or directory belongs to another user.
    #[error("{path} is owned by uid {found}, expected our euid {expected}{hint}")]
    WrongOwner {
        /// The offending file or directory.
        path: PathBuf,
        /// Its owner.
        found: u32,
        /// Our effective uid.
        expected: u32,
        /// What to do about it (empty, or a sentence naming `SHMWIRE_ROOT`
        /// when the path is a session root).
        hint: &'static str,
    },
    /// The file or directory is accessible to group or others.
    #[error("{path} has mode {mode:#o}; group/other access is not allowed{hint}")]
    InsecureMode {
        /// The offending file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// What to do about it (empty, or a sentence naming `SHMWIRE_ROOT`
        /// when the path is a session root).
        hint: &'static str,
    },
    /// The session root's path holds a control character or a byte that
    /// is not UTF-8. Refused when a session is opened, attached or its root
    /// scanned ([`check_root_path`](super::check_root_path)): such a path
    /// would be printed raw or lossily and handed to other processes (a
    /// worker, a node) that could not name it back.
    #[error("session root {path} is refused: its path holds {what} at byte {at}{hint}")]
    BadRootPath {
        /// The path, escaped: control characters as `\u{..}` (`\n` …),
        /// bytes that are not UTF-8 as `\xNN`; never printed raw.
        path: String,
        /// What was found, escaped as in `path` (`a control character
        /// (\u{1b})`, `a byte that is not UTF-8 (\xff)`).
        what: String,
        /// Its byte offset in the path.
        at: usize,
        /// What to do about it (a sentence naming `SHMWIRE_ROOT`).
        hint: &'static str,
    },
    /// A directory under the root is not a shmwire session (it has no
    /// session marker); inspect and cleanup leave it alone.
    #[error(
        "{path} is not a shmwire session directory ({})",
        marker_note(marker, found)
    )]
    NotASession {
        /// The directory.
        path: PathBuf,
        /// The marker file's name.
        marker: &'static str,
        /// What is under the marker's name instead of a regular file of
        /// ours (`"a FIFO"`, `"a symbolic link (never followed)"`,
        /// `"a regular file of another user"`), if anything.
        found: Option<&'static str>,
    },
    /// An existing directory at a session's path that is neither a session
    /// (no session marker, none appeared within 2 s) nor empty: someone
    /// else's directory. [`Session::open`](super::Session::open)
    /// refuses it, because a session there would take its files for
    /// leftovers of dead processes and remove them.
    #[error(
        "{path} already exists, holds files and is not a shmwire session directory (no {marker} marker): \
         shmwire makes a session only in a new or empty directory; choose another session name or root, \
         or move the directory away"
    )]
    ForeignDirectory {
        /// The directory.
        path: PathBuf,
        /// The marker file's name.
        marker: &'static str,
    },
    /// A path that should be a regular file (segment) or a directory
    /// (session, root) is something else, e.g. a symlink.
    #[error("{path} is {found}, not a {expected}{hint}")]
    WrongFileType {
        /// The offending path.
        path: PathBuf,
        /// What it is: "a symbolic link (never followed)", "a regular
        /// file", "a FIFO", …
        found: &'static str,
        /// `"regular file"` or `"directory"`.
        expected: &'static str,
        /// What to do about it (empty, or a sentence naming `SHMWIRE_ROOT`
        /// when the path is a session root).
        hint: &'static str,
    },
    /// The requested payload is larger than [`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN)
    /// (or does not fit the address space).
    #[error("payload of {requested} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The requested payload length.
        requested: u64,
        /// The limit.
        limit: u64,
    },
}

impl ShmError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the segment layer.
pub type Result<T, E = ShmError> = std::result::Result<T, E>;

/// The parenthesis of [`ShmError::NotASession`]'s message.
fn marker_note(marker: &str, found: &Option<&'static str>) -> String {
    match found {
        None => format!("no {marker} marker"),
        Some(what) => format!("its {marker} is {what}, not the marker"),
    }
}

//! `shmwire node --session S …`: parses, starts `shmwire::node::Node`,
//! prints what each round did, and stops it on SIGINT/SIGTERM/SIGHUP
//! (`interrupt`). A cleanup error is printed when it first appears, not
//! every round while it lasts; when it ends, a line says so. So is a part
//! of the node that became unhealthy (what `/health` reports).

use std::collections::BTreeSet;
use std::sync::Arc;

use shmwire::node::{Node, NodeConfig, TickReport};
use shmwire::shm::{self, Session};

use crate::interrupt::Interrupt;

use crate::{CliResult, NodeArgs};

/// The line `shmwire node` prints once it serves (tests wait for it).
pub const READY_LINE: &str = "node ready";

/// Prints round `r`: the workers that died, what was removed, and the
/// cleanup errors not in `errors` (the last round's, replaced by this
/// round's).
fn print_tick(
    r: &TickReport,
    errors: &mut BTreeSet<String>,
    unhealthy: &mut BTreeSet<&'static str>,
) -> Result<(), crate::out::StdoutError> {
    // A part that became unhealthy is said once (with its problem), and
    // again when it is well: `/health` says it all along.
    for (part, problem) in &r.unhealthy {
        if unhealthy.insert(part) {
            errln!(
                "shmwire node: {part}: {} (said once while it lasts; /health answers 503)",
                shmwire::terminal_safe(problem)
            );
        }
    }
    unhealthy.retain(|part| {
        let still = r.unhealthy.iter().any(|(p, _)| p == part);
        if !still {
            errln!("shmwire node: {part}: healthy again");
        }
        still
    });
    for d in &r.died {
        outln!(
            "worker {}{} (pid {}) died",
            d.worker_id,
            d.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            d.pid
        );
    }
    if r.restored.any() {
        errln!(
            "shmwire node: removed or replaced under it, put back: {}",
            r.restored.describe()
        );
    }
    if r.store_restored.any() {
        errln!(
            "shmwire node: removed or replaced under its store, put back: {}",
            r.store_restored.describe()
        );
    }
    let c = &r.cleanup;
    print_removed(c)?;
    let (new, over) = cleanup_errors_to_say(errors, &c.errors);
    for e in new {
        errln!(
            "shmwire node: cleanup: {} (said once while it lasts)",
            shmwire::terminal_safe(&e)
        );
    }
    if over {
        errln!("shmwire node: cleanup: no errors any more");
    }
    Ok(())
}

/// The `removed:` line of a cleanup pass that removed anything.
fn print_removed(c: &shmwire::shm::CleanupReport) -> Result<(), crate::out::StdoutError> {
    if c.removed_anything() {
        outln!(
            "removed: segments {:?}, lock files {:?}, other {:?}",
            c.removed_segments,
            c.removed_lock_files,
            c.removed_other
        );
    }
    Ok(())
}

/// Most distinct cleanup errors remembered while errors last (beyond it, a
/// new one is said and not remembered).
const SAID_ERRORS_MAX: usize = 256;

/// The errors of this round (`now`) not said since errors began (`said`,
/// updated with their [`error_shape`]s), and whether errors just ended (a
/// round without any after some). Errors that take turns round after round
/// — under a descriptor flood, listing, opening and reading fail in turn —
/// are each said once while errors last, not again each time they come
/// back; so are errors that differ only in numbers (a full disk failed each
/// round's write of a new temporary file, `.tmp-<pid>-<lock>-<n>-entry`,
/// and the node said so ten times a second: the attack on `4b2e27d`).
fn cleanup_errors_to_say(said: &mut BTreeSet<String>, now: &[String]) -> (Vec<String>, bool) {
    if now.is_empty() {
        let over = !said.is_empty();
        said.clear();
        return (Vec::new(), over);
    }
    let mut new = Vec::new();
    let mut shapes = BTreeSet::new();
    for e in now {
        let shape = error_shape(e);
        if !said.contains(&shape) && shapes.insert(shape.clone()) {
            new.push(e.clone());
            if said.len() < SAID_ERRORS_MAX {
                said.insert(shape);
            }
        }
    }
    (new, false)
}

/// The warning for an endpoint (`what`, serving `serves`) that listens at
/// `addr` beyond loopback, `None` on loopback: neither endpoint has a
/// token (as Ray's object manager has none), so any host that reaches the
/// address reads what it serves; and an unspecified address (`0.0.0.0`)
/// is not one another node can pull from (the attack on `d7747d2`: the
/// ready line said "objects 0.0.0.0:…", and nothing else).
fn beyond_loopback(what: &str, addr: std::net::SocketAddr, serves: &str) -> Option<String> {
    let ip = addr.ip();
    if ip.is_loopback() {
        return None;
    }
    let reach = if ip.is_unspecified() {
        format!(
            " (on every interface: other hosts reach it at this host's address and port {}, not \
             at {addr})",
            addr.port()
        )
    } else {
        String::new()
    };
    Some(format!(
        "shmwire node: warning: the {what} listens at {addr}, beyond loopback{reach}, and has no \
         token: any host that reaches it can read {serves}"
    ))
}

/// `e` with each word that holds a `/` (a path) written `<path>` and each
/// run of ASCII digits written `#`: errors that differ only in a file's
/// name, a counter, a pid or a size have one shape (a temporary file is
/// named `.tmp-<pid>-<token>-<n>-entry` while the session's marker is
/// there and `.tmp-entry-<pid>-<n>` while it is not: one full disk was
/// said once per form).
fn error_shape(e: &str) -> String {
    let mut shape = String::with_capacity(e.len());
    for (i, word) in e.split(' ').enumerate() {
        if i > 0 {
            shape.push(' ');
        }
        if word.contains('/') {
            shape.push_str("<path>");
            continue;
        }
        let mut digits = false;
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !digits {
                    shape.push('#');
                }
                digits = true;
            } else {
                shape.push(c);
                digits = false;
            }
        }
    }
    shape
}

/// Why the session directory is still there after the node's last pass
/// (or "removed"): only a live process is called one.
/// How many of the files or errors of a session directory kept at stop its
/// line names; the rest are counted: a directory stuffed with 100,000
/// foreign files made a 1.6 MB line, 3,000 unreadable ones a 210 KB line of
/// errors (the attacks on `35c208a` and `59a1fb2`).
const NAMED_AT_STOP: usize = 8;

/// `" and N more"` for a list of `all` of which [`NAMED_AT_STOP`] were
/// named (empty if none is left out).
fn and_more(all: usize) -> String {
    if all > NAMED_AT_STOP {
        format!(" and {} more", all - NAMED_AT_STOP)
    } else {
        String::new()
    }
}

fn kept_because(r: &shm::CleanupReport) -> String {
    if r.removed_dir {
        "removed".to_owned()
    } else if r.vanished {
        "already gone from its path (removed, renamed or replaced under the node while it ran)"
            .to_owned()
    } else if r.has_live() {
        "kept (other processes live)".to_owned()
    } else if !r.ignored.is_empty() || !r.kept_untagged.is_empty() {
        let all = r.ignored.len() + r.kept_untagged.len();
        let first: Vec<_> = r
            .ignored
            .iter()
            .chain(&r.kept_untagged)
            .take(NAMED_AT_STOP)
            .collect();
        format!(
            "kept ({all} entries shmwire did not make, left alone: {first:?}{})",
            and_more(all)
        )
    } else if !r.errors.is_empty() {
        let first: Vec<&str> = r
            .errors
            .iter()
            .take(NAMED_AT_STOP)
            .map(String::as_str)
            .collect();
        format!(
            "kept (cleanup failed: {}{})",
            first.join("; "),
            and_more(r.errors.len())
        )
    } else {
        "kept".to_owned()
    }
}

/// Runs `shmwire node`.
pub fn run(args: NodeArgs) -> CliResult {
    // Its rounds print; a reader that stops reading must not stop them.
    crate::out::background()?;
    let root = args.root.unwrap_or_else(shm::default_root);
    let stop = Interrupt::register()?;
    // The root is made here, not by `Session::open`, to know whether this
    // node made it: a start that fails takes it back when it is empty
    // (`remove_dir` refuses one another process put a session in since).
    let made_root = shm::ensure_root(&root)?;
    let forget_root = || {
        if made_root {
            let _ = std::fs::remove_dir(&root);
        }
    };
    let session = Session::open_in(&root, &args.session).inspect_err(|_| forget_root())?;
    let mut config = NodeConfig::new(args.store_capacity);
    config.store_metadata_capacity = args.store_metadata_capacity;
    config.store_pull_capacity = args.store_pull_capacity;
    config.fallback_dir = args.fallback_dir;
    config.listen = args.listen;
    config.object_listen = args.object_listen;
    let mut node = match Node::start(&session, config) {
        Ok(n) => n,
        Err(e) => {
            // Leave nothing of ours behind (another node may be running).
            let _ = session.remove_all();
            forget_root();
            return Err(e.into());
        }
    };
    outln!(
        "{READY_LINE}: session {} ({}), node {}, http://{}, objects {}, pid {}",
        session.name(),
        session.dir().display(),
        node.id(),
        node.http_addr(),
        node.object_addr()
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        std::process::id()
    );
    // A dead predecessor's files, removed before the node took the session.
    print_removed(node.start_cleanup())?;
    for (what, addr, serves) in [
        (
            "object endpoint",
            node.object_addr(),
            "every sealed object of this node's store",
        ),
        (
            "HTTP endpoint",
            Some(node.http_addr()),
            "/inspect: the session's processes, pids and paths",
        ),
    ] {
        if let Some(warning) = addr.and_then(|a| beyond_loopback(what, a, serves)) {
            errln!("{warning}");
        }
    }
    // A closed stdout ends the node as SIGTERM does (see `out`).
    let stop2 = Arc::clone(stop.flag());
    let mut errors = BTreeSet::new();
    let mut unhealthy = BTreeSet::new();
    // An error here: the session directory went (the node stops itself).
    let ran = node.run(stop.flag(), |r| {
        // A closed stdout found by the output thread after the last line
        // was queued: stopped at this round, not at the next line.
        if print_tick(r, &mut errors, &mut unhealthy).is_err() || crate::out::stdout_failed() {
            stop2.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let report = node.shutdown()?;
    // The root too, if this node made it and nothing else is in it now.
    forget_root();
    // Best effort: stdout may be closed by now (the node still stopped).
    let _ = crate::out::write(
        format_args!("node stopped; session directory {}", kept_because(&report)),
        "\n",
    );
    Ok(ran?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_errors_that_take_turns_are_said_once_while_they_last() {
        let mut said = BTreeSet::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["a"])),
            (s(&["a"]), false)
        );
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["b"])),
            (s(&["b"]), false)
        );
        // `a` and `b` come back in turn: nothing new to say.
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["a"])),
            (s(&[]), false)
        );
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["b", "a", "b"])),
            (s(&[]), false)
        );
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["c", "c"])),
            (s(&["c"]), false)
        );
        // A round without errors ends them; `a` is said again after.
        assert_eq!(cleanup_errors_to_say(&mut said, &[]), (s(&[]), true));
        assert_eq!(cleanup_errors_to_say(&mut said, &[]), (s(&[]), false));
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["a"])),
            (s(&["a"]), false)
        );
    }

    #[test]
    fn endpoints_beyond_loopback_are_warned_of() {
        let w = |a: &str| beyond_loopback("object endpoint", a.parse().unwrap(), "objects");
        assert_eq!(w("127.0.0.1:5"), None);
        assert_eq!(w("[::1]:5"), None);
        let any = w("0.0.0.0:7").unwrap();
        assert!(
            any.contains("listens at 0.0.0.0:7, beyond loopback (on every interface")
                && any.contains("port 7")
                && any.contains("no token"),
            "{any}"
        );
        let one = w("10.1.2.3:9").unwrap();
        assert!(
            one.contains("at 10.1.2.3:9, beyond loopback, and has no token"),
            "{one}"
        );
    }

    #[test]
    fn errors_that_differ_only_in_numbers_are_one() {
        let mut said = BTreeSet::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = |n: u32| format!("write entry /r/s/.tmp-30376-0de70b8d-{n}-entry: No space left");
        assert_eq!(
            cleanup_errors_to_say(&mut said, &[e(7), e(8)]),
            (vec![e(7)], false)
        );
        assert_eq!(cleanup_errors_to_say(&mut said, &[e(9)]), (s(&[]), false));
        // Another error still is.
        assert_eq!(
            cleanup_errors_to_say(&mut said, &s(&["write token: No space left"])),
            (s(&["write token: No space left"]), false)
        );
        // Nor another temporary-name form of the same file's error.
        assert_eq!(
            cleanup_errors_to_say(
                &mut said,
                &s(&["write entry /r/s/.tmp-entry-30376-12: No space left"])
            ),
            (s(&[]), false)
        );
        assert_eq!(error_shape("a12b3c"), "a#b#c");
        assert_eq!(
            error_shape("create 3 /a/b-1: x 2"),
            error_shape("create 4 /c/.d: x 5")
        );
        assert_ne!(error_shape("create /a: x"), error_shape("write /a: x"));
    }
}

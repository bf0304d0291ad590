//! `shmwire inspect` and `shmwire cleanup` against a session in a private
//! temporary root.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use shmwire::shm::{kind, Segment, Session, ShmError};

fn shmwire(root: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run shmwire");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn inspect_and_cleanup_commands() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = tmp.path().join("root");
    let name = format!("cli-{}", std::process::id());
    let s = Session::open_in(&root, &name).unwrap();
    let seg = Segment::create_with(&s, "ring-a", 4096, kind::RING, |_: &mut [u8]| {
        Ok::<_, ShmError>(())
    })
    .unwrap();

    let (ok, text) = shmwire(&root, &["inspect"]);
    assert!(ok, "{text}");
    assert!(text.contains(&name), "{text}");

    let (ok, text) = shmwire(&root, &["inspect", "--session", &name]);
    assert!(ok, "{text}");
    assert!(text.contains("ring-a"), "{text}");
    assert!(text.contains("kind RING"), "{text}");
    assert!(text.contains("creator alive"), "{text}");
    assert!(text.contains("valid"), "{text}");

    // Our process is alive: nothing is stale.
    let (ok, text) = shmwire(&root, &["cleanup", "--all-stale"]);
    assert!(ok, "{text}");
    assert!(text.contains("removed 0 stale"), "{text}");
    assert!(seg.path().exists());

    let (ok, text) = shmwire(&root, &["inspect", "--session", "no-such"]);
    assert!(!ok, "{text}");

    // Issue 10, input 6: cleanup of a live session removes nothing of the
    // live process (this one).
    let (ok, text) = shmwire(&root, &["cleanup", "--session", &name]);
    assert!(ok, "{text}");
    assert!(text.contains("removed 0 stale segment"), "{text}");
    assert!(seg.path().exists());
    // Once this process lets go, the session goes.
    drop(seg);
    s.remove_all().unwrap();
    assert!(!s.dir().exists());
}

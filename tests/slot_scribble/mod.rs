//! What a hostile process of the same user does to a store client's
//! reference slots, and how a test sees the store recover — shared by the
//! library's and the CLI's process tests (each includes this file with
//! `#[path]`).

#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::store::StoreClient;

/// The `/proc/<pid>/fd` links of `pid` whose memfd label starts with
/// `label` (e.g. `store-`, `sidx-`, `sref-`), with each label.
pub fn memfd_links(pid: u32, label: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for e in dir.flatten() {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if let Some(rest) = t.strip_prefix("/memfd:") {
                if rest.starts_with(label) {
                    out.push((e.path(), rest.trim_end_matches(" (deleted)").to_owned()));
                }
            }
        }
    }
    out
}

/// Writes one reference into every slot of every reference-slot memfd
/// (`sref-*`) process `pid` holds, through `/proc/<pid>/fd` as any process
/// of the same user can; returns how many memfds it wrote.
pub fn raise_reference_slots(pid: u32) -> usize {
    let links = memfd_links(pid, "sref-");
    for (path, _) in &links {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let one: Vec<u8> = (0..len).map(|i| u8::from(i % 8 == 0)).collect();
        f.write_all_at(&one, 0).unwrap();
    }
    links.len()
}
/// Puts `n` objects of `size` bytes and deletes each, then waits (at most
/// 10 s) until one object of `n * size` bytes fits — the deletes have
/// completed — and puts it as object `big`. (The service's snapshot lags:
/// its counts are no proof.) Panics with the last error if it never fits.
pub fn deletes_free_their_room(store: &StoreClient, n: u8, size: usize, big: ObjectId) {
    for i in 0..n {
        let id = ObjectId::from_array([i + 1; 28]);
        store.put(id, &vec![i; size], b"").unwrap();
        store.delete(&[id]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.put(big, &vec![7u8; usize::from(n) * size], b"") {
            Ok(()) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the deleted objects never freed their room: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

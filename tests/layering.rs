//! The crate's layers point one way: a module may use only modules below it
//! (or itself), and only the OS layer calls `rustix`.
//!
//! The order, bottom up (also in `src/lib.rs` and `docs/layers.md`):
//!
//! `sys → sync → ids → spec → shm → wake → ring → transport → ordering →
//! store → node → worker`
//!
//! The check reads every `.rs` file under `src/` (the library), strips
//! comments and string literals, and collects each `crate::<module>` path
//! (including every top-level name of a `use crate::{…}` group, and
//! `super::<module>` in a module's root file, which names the crate). A
//! path to a module above the file's own fails the test with the file and
//! line.

use std::path::{Path, PathBuf};

/// The layer order, bottom up.
const LAYERS: &[&str] = &[
    "sys",
    "sync",
    "ids",
    "spec",
    "shm",
    "wake",
    "ring",
    "transport",
    "ordering",
    "store",
    "node",
    "worker",
];

/// The only layer that may name `rustix`.
const OS_LAYER: &str = "sys";

#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    what: String,
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == module)
}

/// The layer a file belongs to (`src/ring/mod.rs` → `ring`,
/// `src/ids.rs` → `ids`), and whether it is that module's root file (where
/// `super::` names the crate). `None` for `lib.rs`.
fn layer_of(rel: &Path) -> Option<(String, bool)> {
    let parts: Vec<_> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [file] if file == "lib.rs" => None,
        [file] => Some((file.trim_end_matches(".rs").to_owned(), true)),
        [dir, file] => Some((dir.clone(), file == "mod.rs")),
        [dir, ..] => Some((dir.clone(), false)),
        [] => None,
    }
}

/// Blanks comments, string and char literals (keeping line breaks), so
/// only code is scanned.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            i = j + close.len();
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // 'x'
        } else if c == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // '\n', '\'', '\u{..}'
            let mut j = i + 2;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level names of a `{…}` group starting right after its `{`.
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut expect = true;
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() && depth > 0 {
        match b[i] {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 1 => expect = true,
            c if expect && depth == 1 && (c.is_ascii_alphabetic() || c == b'_') => {
                heads.push(ident_at(&s[i..]));
                expect = false;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// Checks one file's source; `rel` is its path under `src/`.
fn check_source(rel: &Path, src: &str) -> Vec<Violation> {
    let Some((layer, is_root)) = layer_of(rel) else {
        return Vec::new();
    };
    let Some(own) = rank(&layer) else {
        return vec![Violation {
            file: rel.display().to_string(),
            line: 1,
            what: format!("module `{layer}` is not in the layer order"),
        }];
    };
    let code = code_only(src);
    let mut out = Vec::new();
    let check = |line: usize, target: &str, out: &mut Vec<Violation>| {
        if let Some(r) = rank(target) {
            if r > own {
                out.push(Violation {
                    file: rel.display().to_string(),
                    line,
                    what: format!("`{layer}` uses `{target}`, a layer above it"),
                });
            }
        }
    };
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut prefixes = vec!["crate::"];
    if is_root {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        for (pos, _) in code.match_indices(prefix) {
            // Not part of a longer path segment (e.g. `my_crate::`).
            if pos > 0 {
                let prev = code.as_bytes()[pos - 1];
                if prev.is_ascii_alphanumeric() || prev == b'_' {
                    continue;
                }
            }
            let rest = &code[pos + prefix.len()..];
            let rest_trim = rest.trim_start();
            if let Some(group) = rest_trim.strip_prefix('{') {
                for head in group_heads(group) {
                    check(line_of(pos), head, &mut out);
                }
            } else {
                check(line_of(pos), ident_at(rest_trim), &mut out);
            }
        }
    }
    if layer != OS_LAYER {
        for (pos, _) in code.match_indices("rustix") {
            let prev_ok = pos == 0 || {
                let p = code.as_bytes()[pos - 1];
                !(p.is_ascii_alphanumeric() || p == b'_')
            };
            if prev_ok && code[pos + "rustix".len()..].starts_with("::") {
                out.push(Violation {
                    file: rel.display().to_string(),
                    line: line_of(pos),
                    what: format!("`{layer}` calls rustix; raw OS calls belong in src/sys/"),
                });
            }
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for ent in std::fs::read_dir(dir).unwrap() {
        let p = ent.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut all = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        all.extend(check_source(rel, &std::fs::read_to_string(f).unwrap()));
    }
    let report: Vec<String> = all
        .iter()
        .map(|v| format!("src/{}:{}: {}", v.file, v.line, v.what))
        .collect();
    assert!(
        report.is_empty(),
        "layering violations:\n{}",
        report.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for ent in std::fs::read_dir(&src).unwrap() {
        let p = ent.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "bin" {
            continue;
        }
        assert!(rank(&name).is_some(), "src/{name} is not in LAYERS");
    }
}

#[test]
fn checker_catches_an_upward_import() {
    let file = Path::new("wake/slot.rs");
    let ok = "use crate::sync::AtomicU32;\nuse crate::sys::futex;\n";
    assert!(check_source(file, ok).is_empty());
    let bad = "use crate::sync::AtomicU32;\n\nuse crate::ring::RingError;\n";
    assert_eq!(
        check_source(file, bad),
        vec![Violation {
            file: "wake/slot.rs".into(),
            line: 3,
            what: "`wake` uses `ring`, a layer above it".into(),
        }]
    );
    // Groups, multi-line, and paths in expressions count too.
    let group = "use crate::{\n    sync::Ordering,\n    node::Directory,\n};\nfn f() { crate::worker::run(); }\n";
    let v = check_source(file, group);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!((v[0].line, v[1].line), (1, 5));
    // Comments and strings do not.
    let quiet = "// use crate::node::Directory;\nconst S: &str = \"crate::node\";\n/// [`x`](crate::worker)\n";
    assert!(check_source(file, quiet).is_empty());
    // `super::` in a root file names the crate.
    let v = check_source(Path::new("ring/mod.rs"), "use super::transport::X;\n");
    assert_eq!(v.len(), 1);
    assert!(check_source(Path::new("ring/producer.rs"), "use super::transport::X;\n").is_empty());
    // Raw syscalls outside sys/.
    let v = check_source(file, "fn f() { let _ = rustix::process::getpid(); }\n");
    assert_eq!(v.len(), 1);
    assert!(v[0].what.contains("rustix"));
    assert!(check_source(Path::new("sys/futex.rs"), "use rustix::thread::futex;\n").is_empty());
}

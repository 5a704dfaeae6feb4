//! The map in ARCHITECTURE.md holds: the rooms of `src/` depend on each other in one
//! direction only (no import circle), and no source file grows past about 1,000 lines.
//! Read from the source itself, so a new circle fails `cargo test`, not a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without its `#[cfg(test)]` part and comments (a doc link is not a
/// dependency).
fn production_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `room -> rooms it uses`, where a room is a top-level module of `src/`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let word = regex::Regex::new(r"crate::([a-z_]+)").expect("regex");
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("component");
        let room = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if room == "lib" || room == "main" {
            continue;
        }
        let text = production_code(&std::fs::read_to_string(&f).expect("read"));
        let used = deps.entry(room.clone()).or_default();
        for c in word.captures_iter(&text) {
            if c[1] != room {
                used.insert(c[1].to_string());
            }
        }
    }
    deps
}

/// A path from `from` to `to` through the graph, if there is one.
fn path(
    deps: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![to.to_string()]);
    }
    for next in deps.get(from).into_iter().flatten() {
        if seen.insert(next.clone()) {
            if let Some(mut rest) = path(deps, next, to, seen) {
                rest.insert(0, from.to_string());
                return Some(rest);
            }
        }
    }
    None
}

#[test]
fn no_import_circle_among_the_rooms() {
    let deps = dependencies();
    assert!(deps.len() > 10, "rooms found: {deps:?}");
    let mut circles = Vec::new();
    for (room, used) in &deps {
        for other in used {
            if let Some(back) = path(&deps, other, room, &mut BTreeSet::new()) {
                circles.push(format!("{room} -> {}", back.join(" -> ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_data_flows_one_way() {
    // intake → store → worker → handlers (checks, provisioning) → forge / repo: nothing
    // lower reaches up.
    let deps = dependencies();
    for (low, high) in [
        ("store", "worker"),
        ("store", "handlers"),
        ("intake", "worker"),
        ("intake", "handlers"),
        ("handlers", "worker"),
        ("checks", "handlers"),
        ("runner", "handlers"),
        ("forge", "handlers"),
        ("repo", "handlers"),
        ("repo", "forge"),
        ("policy", "checks"),
        ("manifest", "checks"),
    ] {
        let reaches = path(&deps, low, high, &mut BTreeSet::new());
        assert!(reaches.is_none(), "{low} reaches {high}: {reaches:?}");
    }
}

#[test]
fn no_source_file_is_over_about_a_thousand_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).expect("crates") {
        let dir = krate.expect("crate").path().join("src");
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).expect("read").lines().count();
            (n > 1_050).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}

/// Time comes from `crate::clock` everywhere: the service's clock, or `clock::wall()` where
/// it must be the machine's. A raw `Utc::now()` elsewhere would not move with a test's
/// manual clock.
#[test]
fn time_is_read_only_through_the_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let raw: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("clock.rs"))
        .filter(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            production_code(&text).contains("Utc::now()")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        raw.is_empty(),
        "Utc::now() outside src/clock.rs in:\n{}",
        raw.join("\n")
    );
}

/// ARCHITECTURE.md's table of rooms: `room -> the rooms it says the room uses`.
fn the_map() -> BTreeMap<String, BTreeSet<String>> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let row =
        regex::Regex::new(r"^\| `src/([a-z_]+)(?:\.rs)?` \|[^|]*\| ([^|]*) \|$").expect("regex");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if let Some(c) = row.captures(line) {
            let uses: BTreeSet<String> = c[2]
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s != "nothing")
                .collect();
            map.insert(c[1].to_string(), uses);
        }
    }
    map
}

#[test]
fn the_map_in_architecture_md_matches_the_code() {
    let deps = dependencies();
    let map = the_map();
    let rooms: BTreeSet<&String> = deps.keys().collect();
    let mapped: BTreeSet<&String> = map.keys().collect();
    assert_eq!(rooms, mapped, "rooms in src/ vs rooms in ARCHITECTURE.md");
    for (room, used) in &deps {
        // `ids` is the paved-ids crate, re-exported: every room may use it.
        let unlisted: Vec<&String> = used
            .iter()
            .filter(|u| *u != "ids" && !map[room].contains(*u))
            .collect();
        assert!(
            unlisted.is_empty(),
            "{room} uses {unlisted:?}, which ARCHITECTURE.md does not list"
        );
    }
}

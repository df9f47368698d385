//! The shape of the crate, checked from its sources: module imports form no cycle (between
//! files, and between the top-level modules `lib.rs` lists as layers), `reply/` stays pure
//! (no actix type), no handler takes an optional `web::Data`, and no file in `src/` has
//! more than 600 lines of non-test code.
//!
//! An edge is a path through `crate::`, `super::` or `self::` in a file's code outside its
//! test module; `pub use` re-exports (a module's face) and `#[cfg(doc)]` imports are not
//! edges. Run alone with `cargo test --test layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Largest number of non-test lines a source file may have.
const MAX_CODE_LINES: usize = 600;

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a source file: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The code of a file before its test module, without comments, `pub use` lines and
/// `#[cfg(doc)]` items.
fn code(text: &str) -> String {
    let end = text
        .find("\n#[cfg(test)]\nmod ")
        .or_else(|| text.find("\n#[cfg(test)]\npub(crate) mod "))
        .unwrap_or(text.len());
    let mut out = String::new();
    let mut skip_next = false;
    let mut in_pub_use = false;
    for line in text[..end].lines() {
        let line = line.split("//").next().unwrap_or_default();
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(doc)]") {
            skip_next = true;
            continue;
        }
        if skip_next || in_pub_use || trimmed.starts_with("pub use ") {
            skip_next = false;
            in_pub_use = !trimmed.ends_with(';');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The paths a `use` tree names, flattened: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn flatten(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(|p| flatten(&format!("{prefix}{p}")))
        .collect()
}

/// Every path through `crate::`, `super::` or `self::` in `code`: those of `use` statements
/// flattened, the others as written.
fn referenced_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = String::new();
    for statement in code.split_inclusive(';') {
        let trimmed = statement.trim();
        match trimmed
            .strip_prefix("use ")
            .or_else(|| trimmed.strip_prefix("pub(crate) use "))
            .or_else(|| trimmed.strip_prefix("pub(super) use "))
        {
            Some(tree) => paths.extend(flatten(tree.trim_end_matches(';'))),
            None => rest.push_str(statement),
        }
    }
    let bytes = rest.as_bytes();
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = rest[from..].find(anchor) {
            let start = from + found;
            from = start + anchor.len();
            let before = start.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            let end = rest[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(rest.len(), |n| start + n);
            paths.push(rest[start..end].trim_end_matches(':').to_string());
        }
    }
    paths
}

/// The module a path leads to: the longest prefix that is a module of the crate.
fn resolve(from: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    // The module `self` and `super` are relative to.
    let mut base: Vec<String> = from.to_vec();
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("self") => {
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    let mut target = base;
    let mut best = None;
    if modules.contains(&target) {
        best = Some(target.clone());
    }
    for segment in segments {
        target.push(segment.to_string());
        if modules.contains(&target) {
            best = Some(target.clone());
        }
    }
    best
}

/// Module → modules its code imports (not itself).
fn import_graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(ROOT).join("src");
    let files: Vec<(Vec<String>, PathBuf)> = sources(&src)
        .into_iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, &f), f))
        .collect();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        let edges: BTreeSet<Vec<String>> = referenced_paths(&code(&text))
            .iter()
            .filter_map(|p| resolve(module, p, &modules))
            .filter(|target| target != module && !target.is_empty())
            .collect();
        graph.insert(module.clone(), edges);
    }
    graph
}

/// The strongly connected components with more than one member (Tarjan).
fn cycles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct State<N> {
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        on_stack: BTreeSet<N>,
        next: usize,
        found: Vec<Vec<N>>,
    }
    fn visit<N: Ord + Clone>(n: &N, g: &BTreeMap<N, BTreeSet<N>>, s: &mut State<N>) {
        s.index.insert(n.clone(), s.next);
        s.low.insert(n.clone(), s.next);
        s.next += 1;
        s.stack.push(n.clone());
        s.on_stack.insert(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if !s.index.contains_key(m) {
                visit(m, g, s);
                let low = s.low[n].min(s.low[m]);
                s.low.insert(n.clone(), low);
            } else if s.on_stack.contains(m) {
                let low = s.low[n].min(s.index[m]);
                s.low.insert(n.clone(), low);
            }
        }
        if s.low[n] == s.index[n] {
            let mut component = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack.remove(&m);
                let done = &m == n;
                component.push(m);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for n in graph.keys() {
        if !state.index.contains_key(n) {
            visit(n, graph, &mut state);
        }
    }
    state.found
}

fn describe(cycle: &[Vec<String>], graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> String {
    let members: BTreeSet<&Vec<String>> = cycle.iter().collect();
    let mut lines = Vec::new();
    for from in &members {
        for to in graph.get(*from).into_iter().flatten() {
            if members.contains(to) {
                lines.push(format!("  {} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    lines.join("\n")
}

#[test]
fn no_two_source_files_import_each_other_through_a_cycle() {
    let graph = import_graph();
    assert!(graph.len() > 80, "only {} modules read", graph.len());
    let found = cycles(&graph);
    let text: Vec<String> = found.iter().map(|c| describe(c, &graph)).collect();
    assert!(found.is_empty(), "import cycles:\n{}", text.join("\n\n"));
}

#[test]
fn the_top_level_modules_are_layers() {
    let mut layers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in import_graph() {
        let Some(top) = from.first() else { continue };
        let entry = layers.entry(top.clone()).or_default();
        entry.extend(
            targets
                .iter()
                .filter_map(|t| t.first())
                .filter(|t| *t != top)
                .cloned(),
        );
    }
    let found = cycles(&layers);
    assert!(
        found.is_empty(),
        "cycles between top-level modules: {found:?}\n{layers:#?}"
    );
    // The pure layers: replies, decoders, the catalog parser and the device model reach no
    // actor, no HTTP and no server code.
    for pure in ["reply", "vendor", "catalog", "device"] {
        for forbidden in ["http", "server", "error"] {
            assert!(
                !layers.get(pure).is_some_and(|t| t.contains(forbidden)),
                "{pure} imports {forbidden}"
            );
        }
    }
}

#[test]
fn the_reply_layer_uses_no_actix_type() {
    let reply = Path::new(ROOT).join("src/reply");
    for file in sources(&reply) {
        let text = std::fs::read_to_string(&file).expect("read");
        let code = code(&text);
        assert!(
            !code.contains("actix"),
            "{} names actix outside its tests",
            file.display()
        );
    }
}

#[test]
fn no_handler_takes_optional_app_data() {
    for file in sources(&Path::new(ROOT).join("src")) {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            !text.contains("Option<web::Data"),
            "{} takes an optional web::Data",
            file.display()
        );
    }
}

#[test]
fn no_source_file_has_more_than_600_lines_of_code() {
    let mut long = Vec::new();
    for file in sources(&Path::new(ROOT).join("src")) {
        let text = std::fs::read_to_string(&file).expect("read");
        let end = text.find("\n#[cfg(test)]\nmod ").unwrap_or(text.len());
        let lines = text[..end].lines().count();
        if lines > MAX_CODE_LINES {
            long.push(format!("{} ({lines})", file.display()));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} code lines: {long:?}"
    );
}

#[test]
fn the_checker_finds_a_cycle_and_resolves_paths() {
    // A two-module cycle and a chain, to prove the checks can fail.
    let graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("a", BTreeSet::from(["b"])),
        ("b", BTreeSet::from(["a", "c"])),
        ("c", BTreeSet::new()),
    ]);
    assert_eq!(cycles(&graph).len(), 1);
    let modules: BTreeSet<Vec<String>> = [vec![], vec!["x".into()], vec!["x".into(), "y".into()]]
        .into_iter()
        .collect();
    let from = vec!["x".to_string(), "z".to_string()];
    assert_eq!(
        resolve(&from, "super::y::Thing", &modules),
        Some(vec!["x".to_string(), "y".to_string()])
    );
    assert_eq!(
        resolve(&from, "crate::x::Other", &modules),
        Some(vec!["x".to_string()])
    );
    assert_eq!(
        flatten("crate::a::{b, c::{d, e}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e"]
    );
    let text = "use crate::a::{B, c::D};\npub use crate::c::D;\n// crate::in::comment\nfn f() { super::e::f(); }\n#[cfg(test)]\nmod tests { use crate::z; }";
    assert_eq!(
        referenced_paths(&code(text)),
        ["crate::a::B", "crate::a::c::D", "super::e::f"]
    );
}

//! The house rules of ARCHITECTURE.md ("Crates and boundaries"), checked on the source
//! tree: only the command layer names the sandbox crate; the sandbox crate does not depend
//! on mailroom's library; the library's top-level modules import each other without
//! cycles. `.ci/run` runs these first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The command layer: the binary's own modules, the only ones that may reach a sandbox.
const COMMAND_LAYER: [&str; 3] = ["src/main.rs", "src/cli.rs", "src/app/"];

/// What naming the sandbox crate or its items looks like in Rust source.
const SANDBOX_NAMES: [&str; 5] = [
    "mailroom_sandbox",
    "RunningSandbox",
    "SandboxOptions",
    "CREDENTIAL",
    "crate::sandbox",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// A file's code without comments (doc comments may mention anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable source file");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_the_command_layer_names_the_sandbox() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let mut offenders = Vec::new();
    for file in &files {
        let name = relative(file);
        if COMMAND_LAYER
            .iter()
            .any(|allowed| name.starts_with(allowed))
        {
            continue;
        }
        let code = code(file);
        for item in SANDBOX_NAMES {
            if code.contains(item) {
                offenders.push(format!("{name} names {item}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only {COMMAND_LAYER:?} may name the sandbox crate:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_sandbox_crate_does_not_depend_on_mailroom() {
    for krate in ["sandbox", "googlesql"] {
        let manifest = Path::new(ROOT)
            .join("crates")
            .join(krate)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("crate manifest");
        let dependencies: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("mailroom"))
            .filter(|line| !line.starts_with("mailroom-googlesql"))
            .collect();
        assert!(
            dependencies.is_empty(),
            "crates/{krate} must not depend on mailroom's library: {dependencies:?}"
        );
    }
}

/// Each top-level module of the library and the top-level modules it imports.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |file: &Path| -> Option<String> {
        let rel = file.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_string_lossy();
        let name = first.trim_end_matches(".rs").to_string();
        (!matches!(name.as_str(), "lib" | "main" | "cli" | "app")).then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        // Unit tests may reach anywhere; the graph is of the code that ships.
        let code = code(file);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        let uses = graph.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let mut names = vec![rest];
            // `crate::{a, b::c}` names several modules.
            if let Some(group) = rest.strip_prefix('{') {
                names = group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .collect();
            }
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) && name != module {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if any, as the modules along it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((module, path)) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn library_modules_import_each_other_without_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("warehouse") && graph.contains_key("services"));
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|module| cycle_from(&graph, module))
        .map(|cycle| cycle.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(m, uses)| (m.to_string(), uses.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        cycle_from(&graph, "a").map(|c| c.join(" ")),
        Some("a b c a".to_string())
    );
    assert_eq!(cycle_from(&graph, "d"), None);
}

//! The module graph (issue 14): imports go down the layers that `src/lib.rs`
//! lists, never up, and the files of one folder import each other without a
//! cycle. Read from the source, so a `use crate::…` that points up fails
//! here, naming the file and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top to bottom, as `src/lib.rs` writes them. A module may
/// import any module of a lower layer; modules of one layer import each
/// other only where `SAME_LAYER` says so.
const LAYERS: &[&[&str]] = &[
    &["demo"],
    &["app", "logging"],
    &["server", "gateway", "admin"],
    &["proxy", "pages"],
    &["auth"],
    &["sandbox"],
    &["factor", "audit"],
    &["metrics"],
    &["store", "users"],
    &["config"],
    &["access"],
    &["model", "clock", "wire"],
];

/// Imports allowed between two modules of one layer.
const SAME_LAYER: &[(&str, &str)] = &[];

/// Import cycles allowed among the files of one folder, by file stem.
const FILE_CYCLES: &[&[&str]] = &[
    &["challenge", "flow", "methods"],
    &["fast_path", "listener"],
];

/// One `crate::` reference in non-test code.
#[derive(Debug)]
struct Import {
    file: PathBuf,
    line: usize,
    /// The path after `crate::`, up to the first item that is not a
    /// lower-case module name: `store::live` for `crate::store::live::X`.
    modules: Vec<String>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_import_goes_down_the_layers() {
    let src = src_dir();
    let mut wrong = Vec::new();
    for import in imports_under(&src) {
        let from = top_module(&src, &import.file);
        let Some(to) = import.modules.first().map(String::as_str) else {
            continue;
        };
        if from == to || from == "lib" || from == "main" {
            continue;
        }
        let (Some(from_rank), Some(to_rank)) = (rank(&from), rank(to)) else {
            wrong.push(format!(
                "{}:{}: {from} -> {to}: add the module to LAYERS",
                import.file.display(),
                import.line
            ));
            continue;
        };
        let allowed =
            to_rank > from_rank || (to_rank == from_rank && SAME_LAYER.contains(&(&from, to)));
        if !allowed {
            wrong.push(format!(
                "{}:{}: {from} imports {to}, which is not below it",
                import.file.display(),
                import.line
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that go up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_table_names_every_module_once() {
    let mut listed: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    listed.sort_unstable();
    let mut on_disk: Vec<String> = std::fs::read_dir(src_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| match name.strip_suffix(".rs") {
            Some("lib" | "main") => None,
            Some(stem) => Some(stem.to_owned()),
            None => Some(name),
        })
        .collect();
    on_disk.sort_unstable();
    on_disk.dedup();
    assert_eq!(listed, on_disk, "LAYERS and the folders of src/ differ");
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    for layer in LAYERS {
        let written = layer.join(", ");
        assert!(
            lib.contains(&written),
            "src/lib.rs does not list the layer `{written}`"
        );
    }
}

#[test]
fn the_files_of_a_folder_import_each_other_without_a_cycle() {
    let src = src_dir();
    let mut edges: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for import in imports_under(&src) {
        let Some((folder, from, to)) = sibling_edge(&src, &import) else {
            continue;
        };
        edges
            .entry(folder)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    let mut wrong = Vec::new();
    for (folder, graph) in &edges {
        for cycle in cycles(graph) {
            let allowed = FILE_CYCLES.iter().any(|ok| {
                ok.len() == cycle.len() && cycle.iter().all(|f| ok.contains(&f.as_str()))
            });
            if !allowed {
                wrong.push(format!("{}: {}", folder.display(), cycle.join(" <-> ")));
            }
        }
    }
    assert!(wrong.is_empty(), "import cycles:\n{}", wrong.join("\n"));
}

/// The reader of this test can trust it: an upward import, written the
/// ways the code writes imports, is found.
#[test]
fn an_import_that_goes_up_is_found() {
    let text = "use crate::store::{LiveSessions, SessionId};\n\
                use crate::{clock::Clock, gateway::Gateway};\n\
                fn f() { crate::server::run(); }\n\
                use super::{flow::Authenticator, password};\n\
                #[cfg(test)]\nmod tests {\n    use crate::app::App;\n}\n";
    let src = src_dir();
    let found: Vec<Vec<String>> = references(&src, &src.join("auth/x.rs"), text)
        .into_iter()
        .map(|i| i.modules)
        .collect();
    let firsts: Vec<&str> = found.iter().map(|m| m[0].as_str()).collect();
    assert_eq!(
        firsts,
        ["store", "clock", "gateway", "server", "auth", "auth"]
    );
    assert_eq!(
        found[4],
        ["auth", "flow"],
        "super:: is read from the file's folder"
    );
}

fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

/// `from` and `to` are files (or sub-folders) of one folder, and `from`
/// imports `to` by `super::to` or by its full `crate::` path.
fn sibling_edge(src: &Path, import: &Import) -> Option<(PathBuf, String, String)> {
    let folder = import.file.parent()?.to_path_buf();
    let stem = import.file.file_stem()?.to_string_lossy().into_owned();
    if stem == "mod" || folder == src {
        return None;
    }
    let folder_path: Vec<String> = folder
        .strip_prefix(src)
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let rest = import.modules.strip_prefix(folder_path.as_slice())?;
    let to = rest.first()?.clone();
    (to != stem).then_some((folder, stem, to))
}

/// Every cycle (strongly connected set of more than one file) of `graph`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        false
    };
    let mut found: Vec<Vec<String>> = Vec::new();
    for node in graph.keys() {
        let mut cycle: Vec<String> = graph
            .keys()
            .filter(|other| reaches(node, other) && reaches(other, node))
            .cloned()
            .collect();
        if !cycle.contains(node) || cycle.len() < 2 {
            continue;
        }
        cycle.sort();
        if !found.contains(&cycle) {
            found.push(cycle);
        }
    }
    found
}

/// The `crate::` references of every `.rs` file under `dir`, test code
/// left out.
fn imports_under(dir: &Path) -> Vec<Import> {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    let test_files = test_module_files(&files);
    files
        .iter()
        .filter(|f| !test_files.contains(*f))
        .flat_map(|file| references(dir, file, &std::fs::read_to_string(file).unwrap()))
        .collect()
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Files that are test modules of another (`#[cfg(test)] mod name;`).
fn test_module_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut tests = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.windows(2) {
            let declared = pair[1]
                .trim()
                .strip_prefix("mod ")
                .and_then(|m| m.strip_suffix(';'));
            let (true, Some(name)) = (pair[0].trim() == "#[cfg(test)]", declared) else {
                continue;
            };
            let stem = file.file_stem().unwrap().to_string_lossy();
            let dir = match stem.as_ref() {
                "mod" | "lib" | "main" => file.parent().unwrap().to_path_buf(),
                _ => file.with_extension(""),
            };
            tests.insert(dir.join(format!("{name}.rs")));
            tests.insert(dir.join(name).join("mod.rs"));
        }
    }
    tests
}

/// The `crate::` paths of `text`, outside comments and `#[cfg(test)]`
/// modules (rustfmt puts such a module's closing brace at its own indent).
fn references(src: &Path, file: &Path, text: &str) -> Vec<Import> {
    let lines: Vec<&str> = text.lines().collect();
    let parent = parent_module(src, file);
    let mut found = Vec::new();
    let mut skip_until: Option<String> = None;
    for (index, line) in lines.iter().enumerate() {
        if let Some(end) = &skip_until {
            if *line == end.as_str() {
                skip_until = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let opens_test_module = trimmed == "#[cfg(test)]"
            && lines
                .get(index + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod ") && next.ends_with('{'));
        if opens_test_module {
            skip_until = Some(format!("{indent}}}"));
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let following = lines.get(index + 1..).unwrap_or(&[]);
        for path in paths_after(line, following, "crate::", &[]) {
            found.push(Import {
                file: file.to_path_buf(),
                line: index + 1,
                modules: path,
            });
        }
        for path in paths_after(line, following, "super::", &parent) {
            found.push(Import {
                file: file.to_path_buf(),
                line: index + 1,
                modules: path,
            });
        }
    }
    found
}

/// The module `super` names in `file`, as a path from the crate root:
/// the folder's module for a file (`server/listener/differential.rs` →
/// `server::listener`), its parent's for a `mod.rs`.
fn parent_module(src: &Path, file: &Path) -> Vec<String> {
    let Ok(relative) = file.strip_prefix(src) else {
        return Vec::new();
    };
    let mut modules: Vec<String> = relative
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if file.file_stem().is_some_and(|s| s == "mod") {
        modules.pop();
    }
    modules
}

/// The module paths, from the crate root, named after each `prefix`
/// (`crate::`, or `super::` meaning `base`) in `line`; a `{` group is read
/// up to its closing brace, across the following lines.
fn paths_after(line: &str, following: &[&str], prefix: &str, base: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let mut after = &rest[at + prefix.len()..];
        let mut base = base.to_vec();
        while let Some(further) = after.strip_prefix(prefix) {
            base.pop();
            after = further;
        }
        let rooted = |path: Vec<String>| [base.clone(), path].concat();
        if let Some(group) = after.strip_prefix('{') {
            let mut text = group.to_owned();
            for next in following {
                if text.contains('}') {
                    break;
                }
                text.push_str(next);
            }
            let inner = text.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let path = module_path(part.trim());
                if !path.is_empty() {
                    paths.push(rooted(path));
                }
            }
        } else {
            let path = module_path(after);
            if !path.is_empty() {
                paths.push(rooted(path));
            }
        }
        rest = after;
    }
    paths
}

/// The leading lower-case segments of a path: `store::live::X` →
/// `[store, live]`.
fn module_path(text: &str) -> Vec<String> {
    let mut modules = Vec::new();
    for segment in text.split("::") {
        let name: String = segment
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let is_module = name.starts_with(|c: char| c.is_ascii_lowercase());
        if !is_module || name == "self" {
            break;
        }
        let whole = name.len() == segment.len();
        modules.push(name);
        if !whole {
            break;
        }
    }
    modules
}

/// `src/auth/LIFECYCLE.md` and `docs/architecture.md` point a reader at
/// code: every file they name exists, and every `Type::function` they name
/// is a function (or variant) of that name in `src/`.
#[test]
fn the_architecture_docs_name_code_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    collect_files(&src_dir(), &mut sources);
    let code: String = sources
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut missing = Vec::new();
    for doc in ["src/auth/LIFECYCLE.md", "docs/architecture.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for name in text.split('`').skip(1).step_by(2) {
            let doc_dir = root.join(doc).parent().unwrap().to_path_buf();
            if !names_existing_code(
                &[root.to_path_buf(), root.join("src"), doc_dir],
                &code,
                name,
            ) {
                missing.push(format!("{doc}: `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but not found:\n{}",
        missing.join("\n")
    );
}

/// A file path (from the project, from `src/` or from the doc's folder), or `Type::item`: the
/// item must be defined (`fn item`, `mod item`, or a variant `Item`)
/// somewhere in `code`. Anything else in backticks (config keys, commands) passes.
fn names_existing_code(bases: &[PathBuf], code: &str, name: &str) -> bool {
    let is_path = name.ends_with(".rs") || name.ends_with(".md") || name.ends_with(".json");
    let looks_like_path =
        name.contains('/') && !name.contains([' ', '(']) && !name.starts_with('/');
    if is_path || looks_like_path {
        let name = name.trim_end_matches('/');
        return bases
            .iter()
            .map(|base| base.join(name))
            .any(|p| p.exists() || p.with_extension("rs").exists());
    }
    let Some((owner, item)) = name.split_once("::") else {
        return true;
    };
    let simple =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !simple(owner) || !simple(item) {
        return true;
    }
    if item.starts_with(|c: char| c.is_ascii_uppercase()) {
        return code.contains(&format!("{item} "))
            || code.contains(&format!("{item}("))
            || code.contains(&format!("{item},"));
    }
    ["fn {item}(", "fn {item}<", "mod {item} "]
        .iter()
        .any(|form| code.contains(&form.replace("{item}", item)))
}

//! The walls between the crates and inside the coordinator, checked on the
//! source tree: the agent and the coordinator meet only in `proto` and
//! `common`; the sinks know nothing of the node, Raft or the replicated
//! state; the coordinator's modules import each other without circles,
//! but for the composition root (`daemon`), which nothing imports.

// Test helpers panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Names of the workspace crates a manifest depends on (any section).
fn workspace_deps(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|d| d.as_table()))
        .flat_map(|deps| deps.keys())
        .filter(|name| name.starts_with("vantage-"))
        .cloned()
        .collect()
}

/// `.rs` files under `dir`, with their text before any `#[cfg(test)]`.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                out.push((path, code));
            }
        }
    }
    out
}

/// The top-level modules `code` names as `crate::<module>`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if rest.starts_with('{') {
            // `use crate::{a::X, b}`: every path in the braces.
            let inner = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
        }
    }
    refs
}

#[test]
fn agent_and_coordinator_meet_only_in_proto_and_common() {
    let coordinator = workspace_deps("coordinator");
    let agent = workspace_deps("agent");
    assert!(
        !coordinator.contains("vantage-agent"),
        "coordinator depends on {coordinator:?}"
    );
    assert!(
        !agent.contains("vantage-coordinator"),
        "agent depends on {agent:?}"
    );
    for deps in [&coordinator, &agent] {
        assert!(deps.contains("vantage-common") && deps.contains("vantage-proto"));
    }
}

#[test]
fn sinks_know_nothing_of_the_node_raft_or_state() {
    let src = root().join("coordinator/src");
    let mut files = sources(&src.join("alert"));
    files.push((
        src.join("alert.rs"),
        std::fs::read_to_string(src.join("alert.rs")).unwrap(),
    ));
    assert!(files.len() >= 7, "the six sinks and alert.rs");
    for (path, code) in files {
        let refs = crate_refs(&code);
        for forbidden in ["node", "raft", "state", "daemon", "grpc"] {
            assert!(
                !refs.contains(forbidden),
                "{} imports crate::{forbidden}",
                path.display()
            );
        }
    }
}

#[test]
fn coordinator_modules_import_each_other_without_circles() {
    let src = root().join("coordinator/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources(&src) {
        let rel = path.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "bin" {
            continue;
        }
        let refs = crate_refs(&code);
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(refs.into_iter().filter(|r| *r != module));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    assert!(graph.len() >= 10, "modules found: {:?}", graph.keys());
    // The composition root may use everything; nothing may use it.
    for (module, deps) in &graph {
        assert!(
            !deps.contains("daemon"),
            "{module} imports the composition root"
        );
    }
    // A module is on a circle when it can reach itself.
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = graph[from].iter().cloned().collect();
        while let Some(m) = todo.pop() {
            if seen.insert(m.clone()) {
                todo.extend(graph[&m].iter().cloned());
            }
        }
        seen
    };
    let circular: Vec<(String, BTreeSet<String>)> = graph
        .keys()
        .filter(|m| reaches(m).contains(*m))
        .map(|m| (m.clone(), graph[m].clone()))
        .collect();
    assert!(
        circular.is_empty(),
        "modules on an import circle (with what they import): {circular:#?}"
    );
}

#[test]
fn the_import_scan_sees_what_it_must() {
    // The scan itself must be able to fail: it finds both import forms.
    let refs = crate_refs("use crate::{node::Proposer, state};\nlet x = crate::raft::types::Raft;");
    assert_eq!(
        refs,
        BTreeSet::from(["node".to_owned(), "raft".to_owned(), "state".to_owned()])
    );
}

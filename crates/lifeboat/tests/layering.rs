//! The engine's folders are layered (docs/architecture.md): each may use only those before it.
//! The compiler enforces the crates' order; this enforces the folders', by reading every
//! `crate::…` path in the sources (test modules aside).

use std::path::Path;

/// Lowest first. The shared pieces every layer may use come first; `config` (reads the whole
/// file into every layer's types) and `demo` sit on top.
const ORDER: &[&str] = &[
    "text",
    "error",
    "duration",
    "schedule",
    "progress",
    "process",
    "fs",
    "repo",
    "d1",
    "source",
    "backup",
    "restore",
    "replicate",
    "tenant",
    "verify",
    "drill",
    "status",
    "incident",
    "config",
    "demo",
];

fn layer_of(name: &str) -> usize {
    ORDER.iter().position(|l| *l == name).unwrap_or_else(|| {
        panic!("{name} is not in the layer order: add it to ORDER and docs/architecture.md")
    })
}

fn visit(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            visit(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn folders_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "lib.rs" {
            continue;
        }
        let own = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let text = std::fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::Error`, `crate::Result`: the root's re-exports of `error`.
            let name = if name.starts_with(char::is_uppercase) {
                "error".to_string()
            } else {
                name
            };
            if name != own && layer_of(&name) > layer_of(own) {
                wrong.push(format!("{rel} uses crate::{name}, a higher layer"));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn no_module_names_the_cli() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            !text.contains("crate::cli"),
            "{} names the CLI",
            f.display()
        );
        assert!(!text.contains("clap::"), "{} uses clap", f.display());
        assert!(
            !text.contains("indicatif"),
            "{} draws progress bars",
            f.display()
        );
    }
}

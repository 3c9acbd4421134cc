//! Every catalog in the repository, read both ways: compiled in by
//! `recourse::catalog!()` (the macro decodes it and embeds constant data)
//! and decoded at run time by `recourse::policy::catalog::decode` (what
//! the file provider does). The two must give the same normalized
//! policies and the same budget declarations, and a catalog with problems
//! must fail both ways with the same messages.
#![allow(missing_docs)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use recourse::policy::PolicySource;
use recourse::policy::catalog::{Builtins, CatalogDoc, decode};

/// Every `recourse.toml` under `dir`, skipping build output.
fn catalogs(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                catalogs(&path, found);
            }
        } else if name == "recourse.toml" {
            found.push(path);
        }
    }
}

fn as_strs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

/// The run-time reading, in the form the generated program prints: every
/// policy, then every budget declaration (by name, as `catalog!()` lists
/// them).
fn runtime(doc: &CatalogDoc) -> String {
    let mut out = String::new();
    for policy in doc.policies(PolicySource::Catalog) {
        writeln!(out, "{policy:?}").unwrap();
    }
    for (name, decl) in &doc.budgets {
        writeln!(out, "budget {name:?} {decl:?}").unwrap();
    }
    out
}

fn cargo(project: &Path, args: &[&str]) -> std::process::Output {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .args(["--offline", "--quiet"])
        .current_dir(project)
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("RECOURSE_CATALOG")
        .output()
        .expect("cargo runs")
}

#[test]
fn every_catalog_gives_the_same_policies_at_compile_time_and_at_run_time() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("the workspace holds ui-tests");
    let mut found = Vec::new();
    catalogs(workspace, &mut found);
    found.sort();
    assert!(found.len() >= 5, "expected the repository's catalogs, found {found:?}");

    let classifiers = recourse::classify::Registry::with_builtins().names();
    let budgets = recourse::budget::Registry::with_builtins().names();
    let triggers = recourse::hedge::Registry::with_builtins().names();
    let (classifiers, budgets, triggers) = (as_strs(&classifiers), as_strs(&budgets), as_strs(&triggers));
    let builtins = Builtins { classifiers: &classifiers, budgets: &budgets, triggers: &triggers };

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    let project = target.join("tests").join("catalog-parity");
    let _ = std::fs::remove_dir_all(project.join("members"));
    std::fs::create_dir_all(project.join("src")).unwrap();
    let recourse = workspace.join("recourse");

    let mut members = Vec::new();
    let mut expected = String::new();
    let mut invalid = Vec::new();
    for (index, path) in found.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        // Named as the build names a catalog outside the crate: by its path.
        let doc = decode(&text, &path.display().to_string(), &builtins);
        let name = format!("catalog{index}");
        let dir = project.join("members").join(&name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
                 [package.metadata.recourse]\ncatalog = {path:?}\n\n[dependencies]\nrecourse = {{ path = {recourse:?} }}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("src/lib.rs"),
            "pub fn catalog() -> &'static recourse::Catalog { recourse::catalog!() }\n",
        )
        .unwrap();
        if doc.is_valid() {
            writeln!(expected, "== {}", path.display()).unwrap();
            expected.push_str(&runtime(&doc));
            members.push((name, path));
        } else {
            invalid.push((name, path, doc));
        }
    }
    assert!(!members.is_empty() && !invalid.is_empty(), "valid and invalid catalogs are both covered");
    for kind in [
        "TokenBucket {",
        "Percentage {",
        "RetryThrottling {",
        "RetryQuota {",
        "AdaptiveThrottling {",
        "Concurrency {",
        "RedisTokenBucket {",
        "Unlimited",
        "Custom",
    ] {
        assert!(expected.contains(kind), "no valid catalog declares a budget `{kind}`: parity would not cover it");
    }

    let (mut dependencies, mut body) = (String::new(), String::new());
    for (name, path) in &members {
        writeln!(dependencies, "{name} = {{ path = \"members/{name}\" }}").unwrap();
        let shown = path.display().to_string();
        writeln!(body, "    println!(\"== {{}}\", {shown:?});").unwrap();
        writeln!(body, "    for policy in {name}::catalog().policies() {{ println!(\"{{policy:?}}\"); }}").unwrap();
        writeln!(
            body,
            "    for (name, decl) in {name}::catalog().budgets() {{ println!(\"budget {{name:?}} {{decl:?}}\"); }}"
        )
        .unwrap();
    }
    let workspace_members = (0..found.len()).fold(String::new(), |mut out, index| {
        write!(out, "\"members/catalog{index}\", ").unwrap();
        out
    });
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"recourse-catalog-parity\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nrecourse = {{ path = {recourse:?} }}\n{dependencies}\n[workspace]\nmembers = [{workspace_members}]\n"
        ),
    )
    .unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    std::fs::write(project.join("src/main.rs"), format!("fn main() {{\n{body}}}\n")).unwrap();

    let output = cargo(&project, &["run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the parity program builds and runs:\n{stderr}");
    let compiled = String::from_utf8_lossy(&output.stdout);
    assert_eq!(compiled, expected, "compile-time and run-time readings differ");

    // A catalog with problems: `catalog!()` refuses it, naming each problem
    // the run-time reader finds.
    for (name, path, doc) in &invalid {
        let output = cargo(&project, &["check", "-p", name, "--message-format=short"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} must not compile", path.display());
        for problem in doc.problems() {
            assert!(stderr.contains(problem), "{}: the build does not report {problem:?}:\n{stderr}", path.display());
        }
    }
}

//! A missing bound on a `#[recourse]` error type is reported once, as the
//! user sees it: with incremental compilation on (trybuild compiles
//! without it, and rustc then drops some duplicates that users still get).
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn each_missing_bound_is_reported_once_when_compiling_incrementally() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().expect("the workspace holds ui-tests");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    let project = target.join("tests").join("incremental");
    std::fs::create_dir_all(project.join("src")).unwrap();
    let recourse = workspace.join("recourse");
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"recourse-incremental-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\nrecourse = {{ path = {recourse:?} }}\n\n[workspace]\n"
        ),
    )
    .unwrap();
    // The workspace's lock file, so the check builds nothing new.
    std::fs::copy(workspace.join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    std::fs::copy(manifest.join("incremental/recourse.toml"), project.join("recourse.toml")).unwrap();
    std::fs::copy(manifest.join("incremental/main.rs"), project.join("src/main.rs")).unwrap();

    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["check", "--offline", "--quiet", "--message-format=short"])
        .current_dir(&project)
        .env("CARGO_INCREMENTAL", "1")
        .env("CARGO_TARGET_DIR", project.join("target"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the fixture must not compile:\n{stderr}");
    let mut errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(": error"))
        .map(|line| line.split_once(": error").map_or(line, |(place, _)| place))
        .collect();
    errors.sort_unstable();
    assert_eq!(
        errors,
        ["src/main.rs:15:28", "src/main.rs:25:52", "src/main.rs:33:40"],
        "one error per mistake, on the return type:\n{stderr}"
    );
    assert_eq!(stderr.matches("cannot hold a `recourse::Error`").count(), 2, "{stderr}");
    assert_eq!(stderr.matches("does not implement `recourse::Classify`").count(), 1, "{stderr}");
}

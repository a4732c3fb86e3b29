//! The versions the crate docs name for its integrations are the ones it is built against.
//!
//! The feature tables in the crate docs and README say which `http`, `tower-http`, `reqwest` and
//! `reqwest-middleware` versions the public API uses; a user with another version gets
//! "trait not satisfied" errors, so the table must not drift from the manifest.

use std::path::Path;

/// The version requirement of a dependency in the workspace manifest.
fn workspace_version(manifest: &toml::Table, name: &str) -> String {
    let dep = &manifest["workspace"]["dependencies"][name];
    dep.as_str()
        .or_else(|| dep.get("version").and_then(|v| v.as_str()))
        .unwrap_or_else(|| panic!("{name} has no version in the workspace manifest"))
        .to_owned()
}

#[test]
fn the_feature_table_names_the_versions_of_the_manifest() {
    // The workspace manifest is not in the packaged crate; there is nothing to compare then.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let manifest: toml::Table = toml::from_str(&text).expect("workspace manifest parses");
    let docs = include_str!("../src/lib.rs");
    for name in [
        "tower",
        "tokio",
        "http",
        "tower-http",
        "reqwest",
        "reqwest-middleware",
    ] {
        let version = workspace_version(&manifest, name);
        let cell = format!("`{name}` {version}");
        assert!(docs.contains(&cell), "the crate docs should say {cell}");
    }
}

//! The one Cargo-specific piece of catalog reading: where a crate's
//! manifest says its catalog is. The catalog itself is decoded by
//! `recourse_policy::catalog`, the reader the runtime shares.

use toml::de::DeTable;

/// Reads `[package.metadata.recourse] catalog` from a Cargo manifest.
pub(super) fn metadata_catalog(manifest: &str) -> Option<String> {
    let table = DeTable::parse(manifest).ok()?;
    let value = table.get_ref().get("package")?.get_ref().get("metadata")?.get_ref().get("recourse")?;
    value.get_ref().get("catalog")?.get_ref().as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_catalog_path() {
        let manifest = "[package]\nname = \"x\"\n[package.metadata.recourse]\ncatalog = \"../recourse.toml\"\n";
        assert_eq!(metadata_catalog(manifest).as_deref(), Some("../recourse.toml"));
        assert_eq!(metadata_catalog("[package]\nname = \"x\"\n"), None);
    }
}

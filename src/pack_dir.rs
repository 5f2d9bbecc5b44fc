//! Reading a rule pack directory from disk: `lexicon/*.toml`, `escalation.toml`,
//! `grammar.toml`, `notices/*.toml`, handed to the pure [`RulePack::from_files`].

use crate::detect::pack::{PackError, PackErrors, RulePack};
use std::path::{Path, PathBuf};

/// Loads the pack in `dir`: `lexicon/*.toml`, `escalation.toml`, `notices/*.toml`.
pub fn load(dir: &Path) -> Result<RulePack, PackErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    let mut rels: Vec<String> = Vec::new();
    for sub in ["lexicon", "notices"] {
        rels.extend(
            toml_files(&dir.join(sub), &mut errors)
                .into_iter()
                .map(|f| format!("{sub}/{f}")),
        );
    }
    rels.push("escalation.toml".to_string());
    // Optional: a pack without it has no slot compositions.
    rels.push("grammar.toml".to_string());
    for rel in rels {
        let path = dir.join(&rel);
        match std::fs::read_to_string(&path) {
            Ok(src) => files.push((path.display().to_string(), rel, src)),
            // A missing file is reported by `from_files`, which knows what a pack needs.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(PackError::file(
                &path.display().to_string(),
                format!("cannot read: {e}"),
            )),
        }
    }
    // Check what could be read too, so that every problem is reported at once.
    match (RulePack::from_files(files), errors.is_empty()) {
        (Ok(pack), true) => Ok(pack),
        (Ok(_), false) => Err(PackErrors(errors)),
        (Err(PackErrors(more)), _) => {
            errors.extend(more);
            Err(PackErrors(errors))
        }
    }
}

/// The `*.toml` files of a directory, sorted by name.
fn toml_files(dir: &Path, errors: &mut Vec<PackError>) -> Vec<String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(PackError::file(
                &dir.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| PathBuf::from(e.file_name()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| p.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

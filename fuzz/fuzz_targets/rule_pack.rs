//! `RulePack::from_files`, what `pairwatch rules check` and `serve` load a pack directory
//! with, on arbitrary files. Input: files separated by NUL bytes; in each, the first line
//! is the path inside the pack (`lexicon/en.toml`, `escalation.toml`, `notices/fr.toml`)
//! and the rest the contents; a path given twice keeps its first file.
//!
//! Checks: never panics; a refused pack reports at least one problem, each with a file,
//! a message and, when it names one of the files given, a line inside that file; an
//! accepted pack has a `sha256:` version of 12 hex digits that does not depend on the
//! order the files come in, and its lexicon scans text (its own files, normalised)
//! giving spans inside the normalised text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::detect::lexicon::Hits;
use pairwatch::detect::normalize::{normalize, Normalized};
use pairwatch::detect::pack::{PackErrors, RulePack};
use pairwatch::detect::signal::Signal;

/// The files of the input; as in a directory, a path is there once (a later file with
/// the same path is dropped: the order of two such files would change the pack).
fn files(data: &[u8]) -> Vec<(String, String, String)> {
    let mut files: Vec<(String, String, String)> = Vec::new();
    for part in String::from_utf8_lossy(data).split('\0') {
        let (rel, src) = part.split_once('\n').unwrap_or((part, ""));
        if files.iter().all(|(_, r, _)| r != rel) {
            files.push((format!("pack/{rel}"), rel.to_string(), src.to_string()));
        }
    }
    files
}

fuzz_target!(|data: &[u8]| {
    let given = files(data);
    match RulePack::from_files(given.clone()) {
        Err(PackErrors(errors)) => {
            assert!(!errors.is_empty(), "a pack refused without a reason");
            for e in &errors {
                assert!(!e.file.is_empty(), "problem without a file: {e:?}");
                assert!(!e.message.is_empty(), "problem without a message: {e:?}");
                let _ = e.to_string();
                // Several files may share a display name: the line fits one of them.
                let fits = given
                    .iter()
                    .filter(|(name, _, _)| *name == e.file)
                    .map(|(_, _, src)| src.matches('\n').count() + 1)
                    .max();
                if let Some(lines) = fits {
                    assert!(
                        e.line <= lines,
                        "{e}: line {} of a {lines}-line file",
                        e.line
                    );
                }
            }
            let _ = PackErrors(errors).to_string();
        }
        Ok(pack) => {
            let hex = pack
                .version
                .strip_prefix("sha256:")
                .expect("sha256: version");
            assert_eq!(hex.len(), 12, "{}", pack.version);
            assert!(
                hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                pack.version
            );
            let mut reversed = given.clone();
            reversed.reverse();
            let again = RulePack::from_files(reversed).expect("same files, other order");
            assert_eq!(again.version, pack.version, "version depends on file order");

            let mut n = Normalized::new();
            let mut hits = Hits::default();
            for (_, _, src) in &given {
                normalize(src, &mut n);
                pack.lexicon.scan(&n, &mut hits);
                let len = n.as_bytes().len();
                for s in Signal::ALL {
                    if let Some((a, b)) = hits.span(s) {
                        assert!(a <= b && b <= len, "{s:?} span {a}..{b} of {len}");
                    }
                }
            }
        }
    }
});

//! Rule packs: a directory of lexicons, escalation rules and victim notices, loaded and
//! validated together. Every problem is collected with its file and line, so
//! `pairwatch rules check` reports them all at once.

use crate::lexicon::{Lexicon, LexiconBuilder};
use crate::notice::Notices;
use crate::rules::RuleSet;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a rule pack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError {
    pub file: String,
    /// 1-based; 0 when the problem is about the file as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl PackError {
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        PackError {
            file: file.to_string(),
            line: 0,
            message: message.into(),
        }
    }

    /// A problem at byte `offset` of `src`.
    pub fn at(file: &str, src: &str, offset: usize, message: impl Into<String>) -> Self {
        let line = src.as_bytes()[..offset.min(src.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        PackError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }

    pub fn from_toml(file: &str, src: &str, e: &toml::de::Error) -> Self {
        let offset = e.span().map_or(0, |s| s.start);
        let message = match e.message().trim() {
            // The parser gives no words for some characters, a control character in a
            // comment for one: the problem is still reported, with its line.
            "" => "invalid TOML: unexpected character".to_string(),
            m => m.to_string(),
        };
        match e.span() {
            Some(_) => PackError::at(file, src, offset, message),
            None => PackError::file(file, message),
        }
    }
}

/// Every problem found in a pack.
#[derive(Debug)]
pub struct PackErrors(pub Vec<PackError>);

impl fmt::Display for PackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PackErrors {}

/// A loaded, validated rule pack.
#[derive(Debug, Clone)]
pub struct RulePack {
    pub lexicon: Lexicon,
    pub rules: RuleSet,
    pub notices: Notices,
    /// `sha256:` of the pack's files, names and contents, first 12 hex digits.
    pub version: String,
}

// The rule pack shipped inside the binary (this repository's `rules/`), listed by build.rs.
include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));

impl RulePack {
    /// The pack built into the binary.
    pub fn embedded() -> Result<RulePack, PackErrors> {
        let files = EMBEDDED
            .iter()
            .map(|(p, s)| (format!("<embedded>/{p}"), p.to_string(), s.to_string()))
            .collect();
        RulePack::from_files(files)
    }

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

    /// Builds a pack from `(display name, path in the pack, contents)`.
    pub fn from_files(mut files: Vec<(String, String, String)>) -> Result<RulePack, PackErrors> {
        files.sort_by(|a, b| a.1.cmp(&b.1));
        let mut errors = Vec::new();
        let mut hasher = Sha256::new();
        for (_, rel, src) in &files {
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            hasher.update(src.as_bytes());
            hasher.update([0]);
        }
        let of = |prefix: &'static str| {
            files
                .iter()
                .filter(move |(_, rel, _)| rel.starts_with(prefix))
        };
        let mut lexicon = LexiconBuilder::new();
        if of("lexicon/").next().is_none() {
            errors.push(PackError::file(
                "lexicon/",
                "no lexicon file (lexicon/*.toml)",
            ));
        }
        for (name, _, src) in of("lexicon/") {
            lexicon.add_file(name, src, &mut errors);
        }
        let rules = match of("escalation.toml").next() {
            Some((name, _, src)) => RuleSet::parse(name, src, &mut errors),
            None => {
                errors.push(PackError::file(
                    "escalation.toml",
                    "missing: the pack has no escalation rules",
                ));
                None
            }
        };
        let mut notices = Notices::default();
        for (name, _, src) in of("notices/") {
            notices.add_file(name, src, &mut errors);
        }
        if let Some(rules) = &rules {
            notices.check_complete("notices/", rules, &mut errors);
        }
        let lexicon = lexicon
            .build()
            .map_err(|e| errors.push(PackError::file("lexicon/", e)))
            .ok();
        match (lexicon, rules, errors.is_empty()) {
            (Some(lexicon), Some(rules), true) => {
                let version = format!("sha256:{}", hex(&hasher.finalize()[..6]));
                Ok(RulePack {
                    lexicon,
                    rules,
                    notices,
                    version,
                })
            }
            _ => Err(PackErrors(errors)),
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

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_without_words_still_says_what_is_wrong() {
        // Found by the `rule_pack` fuzz target (fuzz/artifacts/rule_pack/): the TOML
        // parser's message for a control character in a comment is empty.
        let src = "language = \"en\"\n# \u{1}\n";
        let e = toml::from_str::<toml::Value>(src).unwrap_err();
        let p = PackError::from_toml("lexicon/en.toml", src, &e);
        assert_eq!(p.line, 2);
        assert_eq!(
            p.to_string(),
            "lexicon/en.toml:2: invalid TOML: unexpected character"
        );
    }
}

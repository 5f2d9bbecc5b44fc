//! Rule packs: lexicons, escalation rules and victim notices, built and validated
//! together from the files' contents (reading a directory is `crate::pack_dir`).
//! Every problem is collected with its file and line, so `pairwatch rules check` reports
//! them all at once.

use crate::detect::digest::hex;
pub use crate::detect::error::{PackError, PackErrors};
use crate::detect::grammar::Grammar;
use crate::detect::lexicon::{Lexicon, LexiconBuilder};
use crate::detect::notice::Notices;
use crate::detect::rules::RuleSet;
use sha2::{Digest, Sha256};

/// A loaded, validated rule pack.
#[derive(Debug, Clone)]
pub struct RulePack {
    pub lexicon: Lexicon,
    /// How slot words combine into signals (`grammar.toml`; none without it).
    pub grammar: Grammar,
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
        RulePack::embedded_where(|_| true)
    }

    /// The pack built into the binary with the lexicons of `languages` only (file names
    /// `lexicon/<language>.toml` and `lexicon/<language>-*.toml`): how cost grows with
    /// the lexicon.
    pub fn embedded_languages(languages: &[&str]) -> Result<RulePack, PackErrors> {
        RulePack::embedded_where(|path| {
            let Some(name) = path.strip_prefix("lexicon/") else {
                return true;
            };
            let lang = name.split(['-', '.']).next().unwrap_or_default();
            languages.contains(&lang)
        })
    }

    fn embedded_where(keep: impl Fn(&str) -> bool) -> Result<RulePack, PackErrors> {
        let files = EMBEDDED
            .iter()
            .filter(|(p, _)| keep(p))
            .map(|(p, s)| (format!("<embedded>/{p}"), p.to_string(), s.to_string()))
            .collect();
        RulePack::from_files(files)
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
        let grammar = match of("grammar.toml").next() {
            Some((name, _, src)) => Grammar::parse(name, src, &mut errors),
            None => Grammar::default(),
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
                    grammar,
                    rules,
                    notices,
                    version,
                })
            }
            _ => Err(PackErrors(errors)),
        }
    }
}

//! Victim safety notices: per language (or locale: `pt-BR`) and pattern, read from
//! `notices/<lang>.toml`.
//! The platform shows the notice to the target, in the target's language.

use crate::detect::error::PackError;
use crate::detect::flag::RedFlag;
use crate::detect::rules::{Pattern, RuleSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// The language used when the target's is unknown or has no notice file.
pub const FALLBACK_LANGUAGE: &str = "en";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeFile {
    language: Spanned<String>,
    pattern: BTreeMap<Spanned<String>, NoticeSpec>,
    /// Sentences added to any pattern's notice when the alert carries a red flag.
    #[serde(default)]
    flag: BTreeMap<Spanned<String>, NoticeSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeSpec {
    text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Notices {
    by_language: BTreeMap<String, BTreeMap<Pattern, String>>,
    flags: BTreeMap<String, BTreeMap<RedFlag, String>>,
}

impl Notices {
    pub fn add_file(&mut self, file: &str, src: &str, errors: &mut Vec<PackError>) {
        let spec: NoticeFile = match toml::from_str(src) {
            Ok(s) => s,
            Err(e) => return errors.push(PackError::from_toml(file, src, &e)),
        };
        let lang = spec.language.get_ref().to_ascii_lowercase();
        if self.by_language.contains_key(&lang) {
            return errors.push(PackError::at(
                file,
                src,
                spec.language.span().start,
                format!("language {lang:?} has another notice file"),
            ));
        }
        let texts = texts_of(spec.pattern, Pattern::parse, "pattern", file, src, errors);
        let flags = texts_of(spec.flag, RedFlag::parse, "red flag", file, src, errors);
        self.by_language.insert(lang.clone(), texts);
        self.flags.insert(lang, flags);
    }

    /// Every language must have a notice for every pattern the rules can raise, and
    /// the fallback language must exist.
    pub fn check_complete(&self, dir: &str, rules: &RuleSet, errors: &mut Vec<PackError>) {
        if !self.by_language.contains_key(FALLBACK_LANGUAGE) {
            errors.push(PackError::file(
                dir,
                format!("no notice file for the fallback language {FALLBACK_LANGUAGE:?}"),
            ));
        }
        for (lang, texts) in &self.by_language {
            for p in Pattern::ALL {
                if rules.rules.iter().any(|r| r.pattern == p) && !texts.contains_key(&p) {
                    errors.push(PackError::file(
                        dir,
                        format!("language {lang:?} has no notice for {}", p.as_str()),
                    ));
                }
            }
        }
    }

    /// The notice for `pattern` in `language` if there is one, else in the fallback,
    /// with the sentences of that language for each of `flags` that has some.
    pub fn get(
        &self,
        language: &str,
        pattern: Pattern,
        flags: &[RedFlag],
    ) -> Option<(&str, String)> {
        [language, FALLBACK_LANGUAGE].into_iter().find_map(|l| {
            let (lang, texts) = self.by_language.get_key_value(l)?;
            let mut text = texts.get(&pattern)?.clone();
            let extra = self.flags.get(l);
            for f in flags {
                if let Some(t) = extra.and_then(|e| e.get(f)) {
                    text.push(' ');
                    text.push_str(t);
                }
            }
            Some((lang.as_str(), text))
        })
    }

    pub fn has_language(&self, language: &str) -> bool {
        self.by_language.contains_key(language)
    }
}

/// The texts of a `[pattern.X]` or `[flag.X]` table, by key; unknown keys and empty
/// texts are errors.
fn texts_of<K: Ord>(
    specs: BTreeMap<Spanned<String>, NoticeSpec>,
    parse: impl Fn(&str) -> Option<K>,
    what: &str,
    file: &str,
    src: &str,
    errors: &mut Vec<PackError>,
) -> BTreeMap<K, String> {
    let mut texts = BTreeMap::new();
    for (k, v) in specs {
        let at = k.span().start;
        match parse(k.get_ref()) {
            Some(key) if !v.text.trim().is_empty() => {
                texts.insert(key, v.text.trim().to_string());
            }
            Some(_) => errors.push(PackError::at(file, src, at, "empty notice text")),
            None => errors.push(PackError::at(
                file,
                src,
                at,
                format!("unknown {what} {:?}", k.get_ref()),
            )),
        }
    }
    texts
}

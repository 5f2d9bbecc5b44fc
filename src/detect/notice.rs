//! Victim safety notices: per language (or locale: `pt-BR`) and pattern, read from
//! `notices/<lang>.toml`.
//! The platform shows the notice to the target, in the target's language.

use crate::detect::error::PackError;
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticeSpec {
    text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Notices {
    by_language: BTreeMap<String, BTreeMap<Pattern, String>>,
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
        let mut texts = BTreeMap::new();
        for (k, v) in spec.pattern {
            match Pattern::parse(k.get_ref()) {
                Some(p) if !v.text.trim().is_empty() => {
                    texts.insert(p, v.text.trim().to_string());
                }
                Some(_) => errors.push(PackError::at(
                    file,
                    src,
                    k.span().start,
                    "empty notice text",
                )),
                None => errors.push(PackError::at(
                    file,
                    src,
                    k.span().start,
                    format!("unknown pattern {:?}", k.get_ref()),
                )),
            }
        }
        self.by_language.insert(lang, texts);
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

    /// The notice for `pattern` in `language` if there is one, else in the fallback.
    pub fn get(&self, language: &str, pattern: Pattern) -> Option<(&str, &str)> {
        [language, FALLBACK_LANGUAGE].into_iter().find_map(|l| {
            self.by_language
                .get_key_value(l)
                .and_then(|(k, texts)| texts.get(&pattern).map(|t| (k.as_str(), t.as_str())))
        })
    }

    pub fn has_language(&self, language: &str) -> bool {
        self.by_language.contains_key(language)
    }
}

//! The one error type of the detection core: a problem in a rule pack file, with its
//! file and line. The pack's parts (lexicon, rules, notices) report into it; nothing
//! here imports them back.

use std::fmt;

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

//! The platform's own classifier results, as the rules read them: which attachment
//! labels mean nude media and from what score, which hash lists hold known abuse
//! material, which text labels stand for which lexicon signal. Read from `[classifiers]`
//! in `escalation.toml`, so thresholds are data. Labels the pack does not name are
//! ignored: they never reach the pair state, the evidence or an alert.

use crate::detect::event::{Attachment, AttachmentKind, Label, MAX_LABEL_NAME_BYTES};
use crate::detect::signal::{Signal, SignalSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use toml::Spanned;

/// In `abuse_hash_lists`: a match on any list counts.
pub const ANY_LIST: &str = "*";

/// A text classifier label read as a lexicon signal from a score.
#[derive(Clone, Debug, PartialEq)]
pub struct TextLabel {
    pub label: String,
    pub min: f32,
    pub signal: Signal,
}

/// The pack's reading of classifier results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Classifiers {
    /// Attachment labels meaning nudity, with the score from which they count.
    pub nudity: BTreeMap<String, f32>,
    /// Hash lists whose match is known abuse material (`*`: every list); empty: none.
    pub abuse_lists: Vec<String>,
    pub text: Vec<TextLabel>,
}

// Scores are compared as given; f32 has no total order, hence no `Eq` derive above.
impl Eq for Classifiers {}

/// What the attachments of one message show, by the pack's thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MediaFacts<'a> {
    /// The most confident nudity label of an image or video: (kind, label, score).
    pub nude: Option<(AttachmentKind, &'a str, f32)>,
    /// An attachment matched a list of known abuse material: (kind, list).
    pub abuse: Option<(AttachmentKind, Option<&'a str>)>,
}

impl MediaFacts<'_> {
    /// How the media shows in evidence, each fact the pack read from it:
    /// `[IMAGE nudity 0.97]`, `[VIDEO known abuse material, list ncmec]`; `None` when the
    /// classifiers said nothing the pack reads.
    pub fn tag(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some((kind, list)) = self.abuse {
            let mut part = format!("[{} known abuse material", kind.as_str());
            if let Some(list) = list {
                let _ = write!(part, ", list {list}");
            }
            parts.push(part + "]");
        }
        if let Some((kind, label, score)) = self.nude {
            parts.push(format!("[{} {label} {score:.2}]", kind.as_str()));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

fn is_visual(kind: AttachmentKind) -> bool {
    matches!(kind, AttachmentKind::Image | AttachmentKind::Video)
}

/// What a message's attachments add to its signals, and how the media shows in evidence.
pub struct MediaSignals {
    pub signals: SignalSet,
    /// What the platform's classifiers said, as the pack reads it: `[IMAGE nudity 0.97]`.
    pub classified: Option<String>,
    /// The media alone: `[IMAGE]`.
    pub plain: Option<String>,
}

impl Classifiers {
    /// The signals of a message's attachments: media sent (an image or video), after the
    /// other side asked for images (`requested`); nude by the platform's classifier, or
    /// known abuse material by its hash matching, as the pack reads them.
    pub fn read_media(&self, attachments: &[Attachment], requested: bool) -> MediaSignals {
        let mut signals = SignalSet::EMPTY;
        let visual = attachments.iter().find(|a| is_visual(a.kind));
        let facts = self.media(attachments);
        if visual.is_some() {
            signals.insert(Signal::MediaSent);
            if requested {
                signals.insert(Signal::MediaSentAfterRequest);
            }
        }
        if facts.nude.is_some() {
            signals.insert(Signal::NudeMediaSent);
            if requested {
                signals.insert(Signal::NudeMediaSentAfterRequest);
            }
        }
        if facts.abuse.is_some() {
            signals.insert(Signal::KnownAbuseMaterial);
        }
        MediaSignals {
            signals,
            classified: facts.tag(),
            plain: visual.map(|a| format!("[{}]", a.kind.as_str())),
        }
    }

    /// Nudity and abuse-material facts of a message's attachments.
    pub fn media<'a>(&'a self, attachments: &'a [Attachment]) -> MediaFacts<'a> {
        let mut facts = MediaFacts::default();
        for a in attachments {
            if let Some(m) = a.hash_match.as_ref().filter(|m| m.matched) {
                let listed = self
                    .abuse_lists
                    .iter()
                    .any(|l| l == ANY_LIST || m.list.as_ref() == Some(l));
                if listed && facts.abuse.is_none() {
                    facts.abuse = Some((a.kind, m.list.as_deref()));
                }
            }
            if !is_visual(a.kind) {
                continue;
            }
            for l in &a.labels {
                let counts = self.nudity.get(&l.name).is_some_and(|min| l.score >= *min);
                if counts && facts.nude.is_none_or(|(_, _, best)| l.score > best) {
                    facts.nude = Some((a.kind, l.name.as_str(), l.score));
                }
            }
        }
        facts
    }

    /// The lexicon signals a message's text labels stand for, and the most confident
    /// label read (for evidence).
    pub fn text_signals<'a>(&self, labels: &'a [Label]) -> (SignalSet, Option<&'a Label>) {
        let mut signals = SignalSet::EMPTY;
        let mut strongest: Option<&Label> = None;
        for t in &self.text {
            let Some(l) = labels
                .iter()
                .find(|l| l.name == t.label && l.score >= t.min)
            else {
                continue;
            };
            signals.insert(t.signal);
            if strongest.is_none_or(|s| l.score > s.score) {
                strongest = Some(l);
            }
        }
        (signals, strongest)
    }
}

// ---- parsing -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClassifierSpec {
    #[serde(default)]
    nudity: BTreeMap<String, Spanned<f64>>,
    #[serde(default)]
    abuse_hash_lists: Vec<Spanned<String>>,
    #[serde(default)]
    text: Vec<Spanned<TextLabelSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextLabelSpec {
    label: String,
    min: f64,
    signal: String,
}

/// A score threshold: within (0, 1], and still above 0 as the f32 scores are.
fn threshold(v: f64) -> Result<f32, String> {
    let f = v as f32;
    if f > 0.0 && v <= 1.0 {
        Ok(f)
    } else {
        Err(format!("score threshold {v} is not within (0, 1]"))
    }
}

/// A label name or list id as events carry them: 1 to 64 bytes, no control character.
fn name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_LABEL_NAME_BYTES || v.chars().any(char::is_control) {
        Err(format!(
            "{v:?} can never match: a name is 1 to {MAX_LABEL_NAME_BYTES} bytes without control characters"
        ))
    } else {
        Ok(())
    }
}

impl ClassifierSpec {
    /// The compiled policy; problems go to `err` with their offset.
    pub(crate) fn compile(&self, err: &mut impl FnMut(usize, String)) -> Classifiers {
        let mut out = Classifiers::default();
        for list in &self.abuse_hash_lists {
            match name(list.get_ref()) {
                Ok(()) => out.abuse_lists.push(list.get_ref().clone()),
                Err(e) => err(
                    list.span().start,
                    format!("[classifiers] abuse_hash_lists: {e}"),
                ),
            }
        }
        for (label, min) in &self.nudity {
            match name(label).and_then(|()| threshold(*min.get_ref())) {
                Ok(m) => {
                    out.nudity.insert(label.clone(), m);
                }
                Err(e) => err(
                    min.span().start,
                    format!("[classifiers] nudity {label:?}: {e}"),
                ),
            }
        }
        for t in &self.text {
            let at = t.span().start;
            let spec = t.get_ref();
            let signal = Signal::parse(&spec.signal).filter(|s| s.is_lexical());
            match (signal, name(&spec.label).and_then(|()| threshold(spec.min))) {
                (Some(signal), Ok(min)) if !out.text.iter().any(|x| x.label == spec.label) => {
                    out.text.push(TextLabel {
                        label: spec.label.clone(),
                        min,
                        signal,
                    })
                }
                (Some(_), Ok(_)) => err(at, format!("text label {:?} is listed twice", spec.label)),
                (None, _) => err(
                    at,
                    format!(
                        "text label {:?}: {:?} is not a lexicon category (a text label stands for what the lexicon finds in text)",
                        spec.label, spec.signal
                    ),
                ),
                (_, Err(e)) => err(at, format!("text label {:?}: {e}", spec.label)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::HashMatch;

    fn policy(src: &str) -> (Classifiers, Vec<String>) {
        let spec: ClassifierSpec = toml::from_str(src).unwrap();
        let mut errors = Vec::new();
        let c = spec.compile(&mut |_, m| errors.push(m));
        (c, errors)
    }

    fn image(labels: &[(&str, f32)], hash: Option<(&str, bool)>) -> Attachment {
        Attachment {
            kind: AttachmentKind::Image,
            labels: labels
                .iter()
                .map(|(n, s)| Label {
                    name: n.to_string(),
                    score: *s,
                })
                .collect(),
            hash_match: hash.map(|(l, m)| HashMatch {
                list: Some(l.to_string()),
                matched: m,
            }),
        }
    }

    const PACK: &str = r#"
        nudity = { nudity = 0.8, explicit = 0.9 }
        abuse_hash_lists = ["csam-a", "csam-b"]
        text = [{ label = "sexual/minors", min = 0.7, signal = "SEXUALIZATION" }]
    "#;

    #[test]
    fn nudity_counts_from_the_pack_threshold_on_images_and_videos_only() {
        let (c, errors) = policy(PACK);
        assert!(errors.is_empty(), "{errors:?}");
        let below = [image(&[("nudity", 0.79)], None)];
        assert_eq!(c.media(&below).nude, None);
        let atts = [image(
            &[("nudity", 0.85), ("explicit", 0.95), ("cat", 1.0)],
            None,
        )];
        let facts = c.media(&atts);
        assert_eq!(facts.nude, Some((AttachmentKind::Image, "explicit", 0.95)));
        assert_eq!(facts.tag().as_deref(), Some("[IMAGE explicit 0.95]"));
        let mut file = image(&[("nudity", 0.99)], None);
        file.kind = AttachmentKind::File;
        assert_eq!(c.media(&[file]).nude, None);
    }

    #[test]
    fn only_matches_on_the_listed_hash_lists_are_abuse_material() {
        let (c, _) = policy(PACK);
        let other = [image(&[], Some(("spam-list", true)))];
        assert_eq!(c.media(&other).abuse, None);
        let unmatched = [image(&[], Some(("csam-a", false)))];
        assert_eq!(c.media(&unmatched).abuse, None);
        let hit = [image(&[("nudity", 0.99)], Some(("csam-b", true)))];
        let facts = c.media(&hit);
        assert_eq!(facts.abuse, Some((AttachmentKind::Image, Some("csam-b"))));
        // No list named in the pack: no match counts; `*`: a match on any list does.
        let (none, _) = policy("");
        assert_eq!(none.media(&hit).abuse, None);
        let (any, _) = policy(r#"abuse_hash_lists = ["*"]"#);
        assert!(any.media(&other).abuse.is_some());
        // Both facts of one image show, abuse material first.
        assert_eq!(
            facts.tag().as_deref(),
            Some("[IMAGE known abuse material, list csam-b] [IMAGE nudity 0.99]")
        );
    }

    #[test]
    fn text_labels_stand_for_lexicon_signals_from_their_threshold() {
        let (c, _) = policy(PACK);
        let labels = |s: f32| {
            vec![
                Label {
                    name: "sexual/minors".into(),
                    score: s,
                },
                Label {
                    name: "toxicity".into(),
                    score: 0.99,
                },
            ]
        };
        let low = labels(0.5);
        assert_eq!(c.text_signals(&low).0, SignalSet::EMPTY);
        let high = labels(0.75);
        let (signals, strongest) = c.text_signals(&high);
        assert_eq!(signals.iter().collect::<Vec<_>>(), [Signal::Sexualization]);
        assert_eq!(strongest.map(|l| l.name.as_str()), Some("sexual/minors"));
    }

    #[test]
    fn bad_thresholds_and_signals_are_reported() {
        let (_, errors) = policy(
            r#"
            nudity = { nudity = 1.5, "" = 0.5 }
            abuse_hash_lists = [""]
            text = [
              { label = "d", min = 1e-50, signal = "SEXUALIZATION" },
              { label = "a", min = 0.5, signal = "MEDIA_SENT" },
              { label = "b", min = 0.0, signal = "SEXUALIZATION" },
              { label = "c", min = 0.5, signal = "SELF_HARM" },
              { label = "c", min = 0.6, signal = "SELF_HARM" },
            ]
        "#,
        );
        assert_eq!(errors.len(), 7, "{errors:?}");
        assert!(
            errors[0].contains("abuse_hash_lists: \"\" can never match"),
            "{errors:?}"
        );
        assert!(errors[1].contains("\"\" can never match"), "{errors:?}");
        assert!(errors[2].contains("not within (0, 1]"), "{errors:?}");
        assert!(
            errors[3].starts_with("text label \"d\": score threshold 0.0000"),
            "{errors:?}"
        );
        assert!(errors[4].contains("not a lexicon category"), "{errors:?}");
        assert!(errors[6].contains("listed twice"), "{errors:?}");
    }
}

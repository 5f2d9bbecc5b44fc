//! The signals the engine recognises: lexicon categories (per message) and facts
//! (from non-text events and pair state). Names are the contract's category names.

/// One signal. The discriminant indexes per-side counters and bit sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Signal {
    AgeProbe,
    PersonalProbe,
    Flattery,
    Secrecy,
    PlatformMove,
    GiftOffer,
    Sexualization,
    ImageRequest,
    VideoCallRequest,
    RecordingClaim,
    ThreatToDistribute,
    MoneyDemand,
    MoreContentDemand,
    Countdown,
    Meetup,
    AgeClaim,
    SelfHarm,
    /// Begging, panic: "please don't", "I'll do anything".
    VictimDistress,
    SafetyTalk,
    // Facts, not found in text by the lexicon.
    /// An adult account claimed a minor's age.
    AgeClaimMismatch,
    /// The side sent an image or a video.
    MediaSent,
    /// The side sent an image or video after the other side asked for one.
    MediaSentAfterRequest,
    /// The side started a video call.
    VideoCall,
    /// A deadline was read from the side's message (a duration or a clock time).
    Deadline,
    /// The side blocked the other.
    Blocked,
    /// The side reported the other.
    Reported,
    // Lexical again: signals added later go last, so that stored bit sets and per-signal
    // counters keep their meaning.
    /// The speaker states an adult age ("i'm 27", "27 m", "j'ai 32 ans").
    AdultAgeClaim,
    /// Romance and age-gap talk: "are you single", "do you like older guys", "age is just a
    /// number".
    RomanceProbe,
    /// The speaker gives in: "ok I'll send it", "I paid", "je vais payer".
    Compliance,
    // Facts again.
    /// The side went on answering (a message, media, a call) after an alert named it the
    /// target; its count is cleared when it blocks or reports the suspect.
    StillInContact,
    /// The two sides know each other (a platform relationship hint, friends on the
    /// platform for a while, or months of talk): computed when rules read it, never
    /// counted.
    KnownContact,
    /// The side sent an image or video that the platform's nudity classifier scored at
    /// or above the pack's threshold (`[classifiers]` in `escalation.toml`).
    NudeMediaSent,
    /// The side sent such media after the other side asked for images.
    NudeMediaSentAfterRequest,
    /// The side sent media that the platform's hash matching found on a list of known
    /// child sexual abuse material.
    KnownAbuseMaterial,
}

pub const SIGNAL_COUNT: usize = 34;

impl Signal {
    pub const ALL: [Signal; SIGNAL_COUNT] = [
        Signal::AgeProbe,
        Signal::PersonalProbe,
        Signal::Flattery,
        Signal::Secrecy,
        Signal::PlatformMove,
        Signal::GiftOffer,
        Signal::Sexualization,
        Signal::ImageRequest,
        Signal::VideoCallRequest,
        Signal::RecordingClaim,
        Signal::ThreatToDistribute,
        Signal::MoneyDemand,
        Signal::MoreContentDemand,
        Signal::Countdown,
        Signal::Meetup,
        Signal::AgeClaim,
        Signal::SelfHarm,
        Signal::VictimDistress,
        Signal::SafetyTalk,
        Signal::AgeClaimMismatch,
        Signal::MediaSent,
        Signal::MediaSentAfterRequest,
        Signal::VideoCall,
        Signal::Deadline,
        Signal::Blocked,
        Signal::Reported,
        Signal::AdultAgeClaim,
        Signal::RomanceProbe,
        Signal::Compliance,
        Signal::StillInContact,
        Signal::KnownContact,
        Signal::NudeMediaSent,
        Signal::NudeMediaSentAfterRequest,
        Signal::KnownAbuseMaterial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::AgeProbe => "AGE_PROBE",
            Signal::PersonalProbe => "PERSONAL_PROBE",
            Signal::Flattery => "FLATTERY",
            Signal::Secrecy => "SECRECY",
            Signal::PlatformMove => "PLATFORM_MOVE",
            Signal::GiftOffer => "GIFT_OFFER",
            Signal::Sexualization => "SEXUALIZATION",
            Signal::ImageRequest => "IMAGE_REQUEST",
            Signal::VideoCallRequest => "VIDEO_CALL_REQUEST",
            Signal::RecordingClaim => "RECORDING_CLAIM",
            Signal::ThreatToDistribute => "THREAT_TO_DISTRIBUTE",
            Signal::MoneyDemand => "MONEY_DEMAND",
            Signal::MoreContentDemand => "MORE_CONTENT_DEMAND",
            Signal::Countdown => "COUNTDOWN",
            Signal::Meetup => "MEETUP",
            Signal::AgeClaim => "AGE_CLAIM",
            Signal::SelfHarm => "SELF_HARM",
            Signal::VictimDistress => "VICTIM_DISTRESS",
            Signal::SafetyTalk => "SAFETY_TALK",
            Signal::AgeClaimMismatch => "AGE_CLAIM_MISMATCH",
            Signal::MediaSent => "MEDIA_SENT",
            Signal::MediaSentAfterRequest => "MEDIA_SENT_AFTER_REQUEST",
            Signal::VideoCall => "VIDEO_CALL",
            Signal::Deadline => "DEADLINE",
            Signal::Blocked => "BLOCKED",
            Signal::Reported => "REPORTED",
            Signal::AdultAgeClaim => "ADULT_AGE_CLAIM",
            Signal::RomanceProbe => "ROMANCE_PROBE",
            Signal::Compliance => "COMPLIANCE",
            Signal::StillInContact => "STILL_IN_CONTACT",
            Signal::KnownContact => "KNOWN_CONTACT",
            Signal::NudeMediaSent => "NUDE_MEDIA_SENT",
            Signal::NudeMediaSentAfterRequest => "NUDE_MEDIA_SENT_AFTER_REQUEST",
            Signal::KnownAbuseMaterial => "KNOWN_ABUSE_MATERIAL",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether lexicon files may list phrases for this signal.
    pub fn is_lexical(self) -> bool {
        let i = self as u8;
        i <= Signal::SafetyTalk as u8
            || (Signal::AdultAgeClaim as u8..=Signal::Compliance as u8).contains(&i)
    }

    pub fn bit(self) -> SignalSet {
        SignalSet(1 << self as u64)
    }
}

/// A set of signals as a bit mask.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SignalSet(pub u64);

impl SignalSet {
    pub const EMPTY: SignalSet = SignalSet(0);

    pub fn contains(self, s: Signal) -> bool {
        self.0 & s.bit().0 != 0
    }
    pub fn insert(&mut self, s: Signal) {
        self.0 |= s.bit().0;
    }
    pub fn remove(&mut self, s: Signal) {
        self.0 &= !s.bit().0;
    }
    pub fn union(self, o: SignalSet) -> SignalSet {
        SignalSet(self.0 | o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn intersects(self, o: SignalSet) -> bool {
        self.0 & o.0 != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_discriminants_index() {
        for (i, s) in Signal::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Signal::parse(s.as_str()), Some(*s));
        }
        assert!(Signal::SafetyTalk.is_lexical());
        assert!(!Signal::MediaSent.is_lexical());
        assert!(!Signal::Reported.is_lexical());
        assert!(Signal::RomanceProbe.is_lexical());
        assert!(Signal::Compliance.is_lexical());
        assert!(!Signal::StillInContact.is_lexical());
        assert!(!Signal::KnownContact.is_lexical());
        assert_eq!(Signal::parse("NOPE"), None);
    }

    #[test]
    fn sets() {
        let mut s = SignalSet::EMPTY;
        s.insert(Signal::MoneyDemand);
        s.insert(Signal::Countdown);
        assert!(s.contains(Signal::MoneyDemand));
        s.remove(Signal::MoneyDemand);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Signal::Countdown]);
    }
}

//! The red flags that make a case urgent for a child helpline, as an alert carries them:
//! self-harm talk, an offender the target knows, a target still in contact with the
//! suspect, a deadline (imminent, or passed while the alert stands).

/// One red flag; its name is the contract's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RedFlag {
    /// The target talked of self-harm or suicide.
    SelfHarm,
    /// The suspect is someone the target knows (a relationship hint, friends on the
    /// platform for a while, months of talk).
    KnownOffender,
    /// The target went on answering, sending media or complying after the alert.
    StillInContact,
    /// The suspect set a deadline that has not passed yet.
    Deadline,
    /// The deadline passed while the alert stood.
    DeadlinePassed,
}

impl RedFlag {
    pub const ALL: [RedFlag; 5] = [
        RedFlag::SelfHarm,
        RedFlag::KnownOffender,
        RedFlag::StillInContact,
        RedFlag::Deadline,
        RedFlag::DeadlinePassed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RedFlag::SelfHarm => "SELF_HARM",
            RedFlag::KnownOffender => "KNOWN_OFFENDER",
            RedFlag::StillInContact => "STILL_IN_CONTACT",
            RedFlag::Deadline => "DEADLINE",
            RedFlag::DeadlinePassed => "DEADLINE_PASSED",
        }
    }

    pub fn parse(s: &str) -> Option<RedFlag> {
        RedFlag::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The names, for error messages.
    pub fn names() -> String {
        RedFlag::ALL.map(RedFlag::as_str).join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in RedFlag::ALL {
            assert_eq!(RedFlag::parse(f.as_str()), Some(f));
        }
        assert_eq!(RedFlag::parse("NOPE"), None);
        assert!(RedFlag::names().starts_with("SELF_HARM, KNOWN_OFFENDER"));
    }
}

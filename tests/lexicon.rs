//! Every signal category of the shipped lexicons, in French and English, written
//! plainly and obfuscated the way teenagers and scammers write.

mod common;

use pairwatch::detect::lexicon::Hits;
use pairwatch::detect::normalize::{normalize, Normalized};
use pairwatch::detect::signal::Signal;

fn signals(text: &str) -> Vec<Signal> {
    let pack = common::pack();
    let mut n = Normalized::new();
    normalize(text, &mut n);
    let mut hits = Hits::default();
    pack.lexicon.scan(&n, &mut hits);
    hits.signals.iter().collect()
}

#[test]
fn each_category_in_both_languages_plain_and_obfuscated() {
    use Signal::*;
    let cases: &[(Signal, &str)] = &[
        (AgeProbe, "t'as quel âge ?"),
        (AgeProbe, "tas kel age"),
        (AgeProbe, "how old r u"),
        (AgeProbe, "HOW OLD ARE YOUUU"),
        (PersonalProbe, "tes parents sont là ?"),
        (PersonalProbe, "t'es seule chez toi ce soir"),
        (PersonalProbe, "are your parents home"),
        (PersonalProbe, "r u h0me al0ne"),
        (Flattery, "t'es trop mature pour ton âge"),
        (Flattery, "you're so mature for your age"),
        (Secrecy, "dis-le à personne, c'est notre secret"),
        (Secrecy, "don't tell anyone, it's our little secret"),
        (Secrecy, "delete this chat"),
        (PlatformMove, "ajoute moi sur snap"),
        (PlatformMove, "add me on s.n.a.p"),
        (PlatformMove, "let's talk on discord"),
        (GiftOffer, "je te donne des robux"),
        (GiftOffer, "i'll buy you v-bucks"),
        (Sexualization, "t'es vierge ?"),
        (Sexualization, "what are you wearing rn"),
        (Sexualization, "send n u d e s"),
        (ImageRequest, "envoie une photo de toi"),
        (ImageRequest, "envoie 1 ph0to de toi stp"),
        (ImageRequest, "send me a pic"),
        (ImageRequest, "pic for pic?"),
        (VideoCallRequest, "allume ta caméra"),
        (VideoCallRequest, "turn on your cam"),
        (RecordingClaim, "j'ai tout enregistré"),
        (RecordingClaim, "i recorded everything"),
        (RecordingClaim, "I SCREENSHOTTED everything"),
        (ThreatToDistribute, "je vais l'envoyer à tous tes contacts"),
        (ThreatToDistribute, "j'envoie tout à tes potes"),
        (ThreatToDistribute, "i'll send it to all your followers"),
        (ThreatToDistribute, "your family will see it"),
        (MoneyDemand, "envoie 200€ en carte PCS"),
        (MoneyDemand, "paysafecard"),
        (MoneyDemand, "send $500 on cash app"),
        (MoreContentDemand, "envoie-en une autre"),
        (MoreContentDemand, "send another one"),
        (Countdown, "dépêche-toi ⏳"),
        (Countdown, "tick tock"),
        (Meetup, "on se voit demain ?"),
        (Meetup, "i can pick you up after school"),
        (AgeClaim, "moi aussi j'ai 14 ans"),
        (AgeClaim, "i'm 15 too"),
        (SelfHarm, "je veux mourir"),
        (SelfHarm, "i want to kill myself"),
        (VictimDistress, "s'il te plaît ne fais pas ça"),
        (VictimDistress, "please don't send it"),
        (SafetyTalk, "appelle le 3018"),
        (SafetyTalk, "it's a scam, don't pay him"),
        (ThreatToDistribute, "pay me or your nudes go viral"),
        (
            ThreatToDistribute,
            "i already sent it to one of your followers",
        ),
        (ThreatToDistribute, "tu veux que ta mère voie ça ?"),
        (
            ThreatToDistribute,
            "si tu paies pas je balance tout sur insta",
        ),
        (RecordingClaim, "i have your face and your body on video"),
        (RecordingClaim, "j'ai enregistré l'appel vidéo"),
        (MoneyDemand, "buy a steam card and send me the code"),
        (
            MoneyDemand,
            "achète une carte paysafecard et envoie moi le code",
        ),
        (SelfHarm, "i can't live like this anymore"),
        (SelfHarm, "je vais me foutre en l'air"),
        (ImageRequest, "envoie une photo sans ton t-shirt"),
    ];
    let mut failures = Vec::new();
    for (expected, text) in cases {
        let got = signals(text);
        if !got.contains(expected) {
            failures.push(format!(
                "{text:?}: expected {}, got {got:?}",
                expected.as_str()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn banter_and_everyday_talk_stay_quiet() {
    for text in [
        "je vais te tuer au prochain round",
        "I'll destroy you, gg ez",
        "t'es mort mdr",
        "envoie la photo du devoir de maths",
        "send me the homework",
        "i'm 15 minutes away",
        "on se fait une partie ?",
        "la prof va me tuer si j'ai pas fini",
        "my mom is gonna kill me lol",
        "on va en finir avec ce boss",
    ] {
        let got = signals(text);
        let risky: Vec<_> = got
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    Signal::ThreatToDistribute
                        | Signal::Sexualization
                        | Signal::MoneyDemand
                        | Signal::RecordingClaim
                        | Signal::SelfHarm
                )
            })
            .collect();
        assert!(risky.is_empty(), "{text:?} matched {risky:?}");
    }
}

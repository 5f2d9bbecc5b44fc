//! The slot grammar, language gating, the media order and the early grooming rules, on
//! conversations built in the test with the embedded rule pack.

mod common;

use common::{image, msg, replay_lines};
use pairwatch::detect::alert::Alert;
use pairwatch::detect::rules::{Pattern, Priority};

const ADULT: User = ("u-adult", "ADULT");
const UNKNOWN: User = ("u-anon", "UNKNOWN");
const TEEN: User = ("u-teen", "AGE_13_15");

fn at(minute: u32) -> String {
    format!("2026-05-02T18:{minute:02}:00Z")
}

fn best(alerts: &[Alert], pattern: Pattern) -> Option<Priority> {
    alerts
        .iter()
        .filter(|a| a.pattern == pattern)
        .map(|a| a.priority)
        .min()
}

/// A user: (id, age band).
type User<'a> = (&'a str, &'a str);

/// One message: sender, recipient, text ("[image]" for an image).
type Line<'a> = (&'a User<'a>, &'a User<'a>, &'a str);

fn conversation(lines: &[Line]) -> Vec<Alert> {
    let events: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, (from, to, text))| {
            if *text == "[image]" {
                image(&format!("e{i}"), &at(i as u32), **from, **to)
            } else {
                msg(&format!("e{i}"), &at(i as u32), **from, **to, text)
            }
        })
        .collect();
    replay_lines(&events.join("\n"))
}

#[test]
fn a_threat_in_words_no_list_holds_is_read_from_its_slots_and_says_which() {
    // A recording claim, then a distribution act aimed at the target's people, worded
    // freely: no phrase of the lexicon holds "going straight to your aunt".
    let alerts = conversation(&[
        (&UNKNOWN, &TEEN, "i screen recorded our whole call btw"),
        (
            &UNKNOWN,
            &TEEN,
            "that clip is going straight to your aunt and your coach",
        ),
    ]);
    assert_eq!(best(&alerts, Pattern::Sextortion), Some(Priority::P0));
    let threat = alerts
        .iter()
        .flat_map(|a| &a.signals)
        .find(|s| s.category == "THREAT_TO_DISTRIBUTE")
        .expect("a threat signal");
    assert_eq!(threat.slots, vec!["SHARE", "AUDIENCE"]);
}

#[test]
fn a_threat_split_over_consecutive_messages_counts_and_a_reply_ends_the_run() {
    let split = conversation(&[
        (&UNKNOWN, &TEEN, "i kept everything from the video call"),
        (&UNKNOWN, &TEEN, "tonight it gets posted"),
        (&UNKNOWN, &TEEN, "to your whole class"),
    ]);
    assert_eq!(best(&split, Pattern::Sextortion), Some(Priority::P0));
    // The same words with the target answering in between are two separate messages,
    // not one threat: "posted" and "your whole class" never share a run (were they read
    // as one, the earlier recording claim would make it a P0 sextortion). The claim
    // comes half an hour before, so that it is in no run with them.
    let interrupted = replay_lines(
        &[
            msg(
                "i1",
                &at(0),
                ADULT,
                TEEN,
                "i kept everything from the video call",
            ),
            msg(
                "i2",
                &at(30),
                ADULT,
                TEEN,
                "the match video gets posted tonight",
            ),
            msg("i3", &at(31), TEEN, ADULT, "cool"),
            msg("i4", &at(32), ADULT, TEEN, "to your whole class, congrats"),
        ]
        .join("\n"),
    );
    assert!(interrupted.is_empty(), "{interrupted:?}");
}

#[test]
fn french_and_spanish_threats_compose_from_their_own_words() {
    let fr = conversation(&[
        (&UNKNOWN, &TEEN, "j'ai tout enregistré pendant l'appel"),
        (
            &UNKNOWN,
            &TEEN,
            "ta vidéo elle finit sur le groupe de ta classe ce soir",
        ),
    ]);
    assert_eq!(best(&fr, Pattern::Sextortion), Some(Priority::P0));
    let es = conversation(&[
        (&UNKNOWN, &TEEN, "te grabé todo en la videollamada"),
        (
            &UNKNOWN,
            &TEEN,
            "si no me pagas 100 euros tu madre y tus amigos lo van a ver",
        ),
    ]);
    assert_eq!(best(&es, Pattern::Sextortion), Some(Priority::P0));
}

#[test]
fn an_image_sent_after_your_turn_then_a_money_demand_is_sextortion_of_a_minor() {
    let alerts = conversation(&[
        (&UNKNOWN, &TEEN, "i sent mine, your turn"),
        (&TEEN, &UNKNOWN, "[image]"),
        (
            &UNKNOWN,
            &TEEN,
            "nice. now 50 on paypal or it goes to your mom",
        ),
    ]);
    assert_eq!(best(&alerts, Pattern::Sextortion), Some(Priority::P0));
    assert!(alerts.iter().any(|a| a
        .rules
        .iter()
        .any(|r| r == "sextortion.threat_after_material")));
}

#[test]
fn a_parent_asking_for_a_photo_is_no_alert() {
    let parent = ("u-mum", "ADULT");
    let alerts = conversation(&[
        (&parent, &TEEN, "send me a pic of the timetable please"),
        (&TEEN, &parent, "[image]"),
        (
            &parent,
            &TEEN,
            "thanks! dinner at 7, don't be late or no dessert",
        ),
    ]);
    assert!(
        alerts.iter().all(|a| a.priority > Priority::P2),
        "{alerts:?}"
    );
}

#[test]
fn an_adult_who_sets_out_the_age_gap_with_a_minor_is_a_grooming_alert_early() {
    let alerts = conversation(&[
        (&TEEN, &ADULT, "hey"),
        (&ADULT, &TEEN, "hi there"),
        (&TEEN, &ADULT, "asl?"),
        (&ADULT, &TEEN, "27 m cali, u?"),
        (&TEEN, &ADULT, "im 13 f"),
    ]);
    let first = alerts
        .iter()
        .find(|a| a.pattern == Pattern::Grooming && a.priority <= Priority::P2)
        .expect("a grooming alert");
    assert_eq!(first.trigger_event_id, "e4");
    assert_eq!(first.suspect.user_id, "u-adult");
    assert_eq!(first.rules, vec!["grooming.age_gap_opening"]);
}

#[test]
fn a_relative_talking_about_school_with_a_minor_is_no_alert() {
    let uncle = ("u-uncle", "ADULT");
    let alerts = conversation(&[
        (&uncle, &TEEN, "how was the maths test?"),
        (
            &TEEN,
            &uncle,
            "ok i think, i'm 13 and it was a 3rd year test lol",
        ),
        (
            &uncle,
            &TEEN,
            "haha proud of you, see you sunday at grandma's",
        ),
    ]);
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn a_phrase_of_another_language_does_not_read_an_english_message() {
    // "hot" is sexual slang in the Italian lexicon; an English speaker talking about
    // the weather must not trip it.
    let alerts = conversation(&[
        (
            &ADULT,
            &TEEN,
            "how old are you? the weather is so hot today, what is the plan for the trip",
        ),
        (&ADULT, &TEEN, "it is hot at the beach"),
    ]);
    assert!(alerts.is_empty(), "{alerts:?}");
}

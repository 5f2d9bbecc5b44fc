//! `normalize` on arbitrary text (invalid UTF-8 converted lossily). Checks what the
//! module promises:
//! - the output is tokens of `[a-z0-9_]`, one space between tokens and one at each end
//!   (a lone space when nothing is readable), and `has_digit` tells whether a digit
//!   survived;
//! - every offset of the map, and every span `original_span` gives, lies inside the
//!   original on a char boundary, start before end (excerpts slice the original there);
//! - a reused `Normalized` gives the same result as a fresh one (it is cleared).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::detect::normalize::{normalize, Normalized};

fn check_span(text: &str, n: &Normalized, start: usize, end: usize) {
    let (s, e) = n.original_span(start, end);
    assert!(s <= e, "span {start}..{end} maps to {s}..{e}");
    assert!(
        e <= text.len(),
        "span {start}..{end} maps past the end: {s}..{e}"
    );
    assert!(
        text.is_char_boundary(s) && text.is_char_boundary(e),
        "span {start}..{end} maps to {s}..{e}, not on char boundaries of {text:?}"
    );
}

fn check(text: &str, n: &Normalized) {
    let out = n.as_bytes();
    assert_eq!(n.as_str().as_bytes(), out, "output is not UTF-8");
    assert!(!out.is_empty(), "output has no padding space");
    assert_eq!(out[0], b' ', "no leading space: {:?}", n.as_str());
    assert_eq!(
        out[out.len() - 1],
        b' ',
        "no trailing space: {:?}",
        n.as_str()
    );
    assert!(
        out.iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b' '),
        "byte outside [a-z0-9_ ]: {:?}",
        n.as_str()
    );
    assert!(
        out.len() == 1 || !out.windows(2).any(|w| w == b"  "),
        "two spaces in a row: {:?}",
        n.as_str()
    );
    assert_eq!(n.has_digit(), out.iter().any(u8::is_ascii_digit));
    // Every single offset (`original_span(i, i)` is the offset of byte i).
    for i in 0..out.len() {
        let (s, e) = n.original_span(i, i);
        assert_eq!(s, e);
        check_span(text, n, i, i);
    }
    // Every token, the way the engine quotes a match, and the whole text.
    let mut at = 0;
    for tok in n.as_str().split(' ') {
        if !tok.is_empty() {
            check_span(text, n, at, at + tok.len());
        }
        at += tok.len() + 1;
    }
    check_span(text, n, 0, out.len());
    check_span(text, n, 1, out.len() - 1);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fresh = Normalized::new();
    normalize(&text, &mut fresh);
    check(&text, &fresh);

    // Reuse: after another message, the same text normalises the same way.
    let mut reused = Normalized::new();
    let other: String = text.chars().rev().collect();
    normalize(&other, &mut reused);
    check(&other, &reused);
    normalize(&text, &mut reused);
    assert_eq!(
        reused.as_bytes(),
        fresh.as_bytes(),
        "reuse changed the output"
    );
    for i in 0..fresh.as_bytes().len() {
        assert_eq!(
            reused.original_span(i, i),
            fresh.original_span(i, i),
            "reuse changed the offset of byte {i}"
        );
    }
    assert_eq!(reused.has_digit(), fresh.has_digit());
});

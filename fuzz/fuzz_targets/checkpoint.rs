//! `checkpoint::read` on a `checkpoint.bin` of arbitrary content (one file in a
//! temporary directory, rewritten for each input). Each input is read twice: as it
//! is, and with a valid CRC32 appended, so that the fuzzer gets past the checksum to
//! the header and the bincode parts behind it.
//!
//! Checks: never panics, and never allocates absurd memory from a length field (run
//! with `-rss_limit_mb=2048`: libFuzzer then also fails any single allocation over
//! 2 GB); a file shorter than a header, or with a wrong checksum, is refused; a
//! checkpoint read back has the position and auxiliary position of its header, and its
//! pairs written again in the current format read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::server::checkpoint::{encode_pairs, file_bytes, read, MAGIC};
use pairwatch_fuzz::with_crc;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d =
            std::env::temp_dir().join(format!("pairwatch-fuzz-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temporary directory");
        d
    })
}

fn check(file: &[u8], crc_ok: bool) {
    std::fs::write(dir().join("checkpoint.bin"), file).expect("write checkpoint.bin");
    match read(dir()) {
        Err(_) => {}
        Ok(None) => panic!("a checkpoint file was there"),
        Ok(Some(r)) => {
            assert!(crc_ok, "a checkpoint with a wrong checksum was read");
            assert!(
                file.len() >= 36,
                "a {}-byte checkpoint was read",
                file.len()
            );
            let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
            assert_eq!((r.seq, r.aux), (u64_at(8), u64_at(16)));
            // Written again (current format, one part), read back the same.
            let part = encode_pairs(r.parts.iter().flatten().map(|(k, s)| (k, s)));
            let again = file_bytes(MAGIC, r.seq, r.aux, &[&part]);
            std::fs::write(dir().join("checkpoint.bin"), &again).expect("write checkpoint.bin");
            let back = read(dir())
                .expect("own checkpoint refused")
                .expect("own checkpoint missing");
            assert_eq!((back.seq, back.aux), (r.seq, r.aux));
            let (got, want): (Vec<_>, Vec<_>) =
                (back.into_pairs().collect(), r.into_pairs().collect());
            assert_eq!(got, want, "pairs changed when written again");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let crc_ok = data.len() >= 4 && {
        let (body, crc) = data.split_at(data.len() - 4);
        crc32fast::hash(body).to_le_bytes() == crc
    };
    check(data, crc_ok);
    check(&with_crc(data), true);
});

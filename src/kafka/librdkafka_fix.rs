//! A fix for a crash of the bundled librdkafka (2.12.1, `rdkafka-sys` 4.10.0, the
//! latest on crates.io), linked in place of one of its internal functions.
//!
//! A Fetch response can carry the partition's current leader (KIP-951); librdkafka then
//! queues a metadata update naming the topic by the id found in the response, and no
//! name. When that id is zero, as tansu answers for a topic id it does not know (after
//! a restart that lost its topics: the consumer still fetches by the old ids), the
//! update looks the topic up by name, and the name is a null pointer:
//! `rd_kafka_metadata_update_op` → `rd_kafka_metadata_cache_find(rk, NULL, 1)` →
//! `strcmp(NULL, …)`, a segmentation fault in the client's main thread, about a second
//! after the broker is back. No client setting avoids that path (the Fetch version
//! cannot be capped, and the fallback API tables stop at Kafka 0.9).
//!
//! The build script links the binaries with `--wrap=rd_kafka_metadata_cache_find`
//! (Linux, x86-64 and AArch64): librdkafka's calls from other files then reach
//! [`__wrap_rd_kafka_metadata_cache_find`] below, which answers "not in the cache" for a
//! null name (librdkafka logs `Topic (null) not found in cache` and skips the update;
//! the fetch error makes it refresh the metadata anyway) and hands every other call
//! to the original. Written in assembly so that the original is only a weak
//! reference: a binary linked without the flag (the fuzz targets) still links.

/// Whether this build carries the fix (the build script's `--wrap` flag and the
/// function below go together).
pub const ACTIVE: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
std::arch::global_asm!(
    ".weak __real_rd_kafka_metadata_cache_find",
    ".globl __wrap_rd_kafka_metadata_cache_find",
    ".type __wrap_rd_kafka_metadata_cache_find, @function",
    ".p2align 4",
    "__wrap_rd_kafka_metadata_cache_find:",
    // (rk, topic, valid): a null topic is never in the cache.
    "    test rsi, rsi",
    "    jz 2f",
    "    jmp qword ptr [rip + __real_rd_kafka_metadata_cache_find@GOTPCREL]",
    "2:",
    "    xor eax, eax",
    "    ret",
    ".size __wrap_rd_kafka_metadata_cache_find, . - __wrap_rd_kafka_metadata_cache_find",
);

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
std::arch::global_asm!(
    ".weak __real_rd_kafka_metadata_cache_find",
    ".globl __wrap_rd_kafka_metadata_cache_find",
    ".type __wrap_rd_kafka_metadata_cache_find, %function",
    ".p2align 2",
    "__wrap_rd_kafka_metadata_cache_find:",
    "    cbz x1, 2f",
    "    adrp x16, :got:__real_rd_kafka_metadata_cache_find",
    "    ldr x16, [x16, :got_lo12:__real_rd_kafka_metadata_cache_find]",
    "    br x16",
    "2:",
    "    mov x0, #0",
    "    ret",
    ".size __wrap_rd_kafka_metadata_cache_find, . - __wrap_rd_kafka_metadata_cache_find",
);

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
extern "C" {
    fn __wrap_rd_kafka_metadata_cache_find(
        rk: *mut std::ffi::c_void,
        topic: *const std::ffi::c_char,
        valid: std::ffi::c_int,
    ) -> *mut std::ffi::c_void;
}

/// Keeps the replacement in every binary that creates a Kafka client: called when one
/// is configured, it makes the linker take the object that defines it.
pub fn anchor() {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    std::hint::black_box(__wrap_rd_kafka_metadata_cache_find as *const ());
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    fn a_null_topic_is_not_in_the_cache() {
        // The null-name path returns before touching the client handle.
        let found = unsafe {
            super::__wrap_rd_kafka_metadata_cache_find(std::ptr::null_mut(), std::ptr::null(), 1)
        };
        assert!(found.is_null());
    }
}

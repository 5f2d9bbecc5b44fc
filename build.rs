//! Build steps:
//! - generates the protobuf types and gRPC services from `proto/` with the protoc shipped by the
//!   `protoc-bin-vendored` crate, so no protoc is needed on the machine;
//! - lists the files of `rules/` so the binary embeds the default rule pack;
//! - links the fix of a librdkafka crash in place of the original function (see
//!   `src/kafka/librdkafka_fix.rs`).

use std::fmt::Write as _;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The bundled librdkafka crashes on a Fetch response naming a topic by a zero id:
    // `src/kafka/librdkafka_fix.rs` replaces the function that dereferences the null
    // name, in every binary, test and bench of this package.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && (arch == "x86_64" || arch == "aarch64") {
        println!("cargo:rustc-link-arg=-Wl,--wrap=rd_kafka_metadata_cache_find");
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-changed=proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_build::configure()
        .file_descriptor_set_path(out.join("pairwatch_descriptor.bin"))
        .compile_protos(
            &[
                "proto/pairwatch/v1/event.proto",
                "proto/pairwatch/v1/alert.proto",
                "proto/pairwatch/v1/service.proto",
            ],
            &["proto".into(), include],
        )?;
    // The ingest service as the server runs it: same routes and wire format, but
    // `PublishBatch` reads its events as bytes (`server::grpc::BatchRequest`) so that an
    // event that cannot be decoded gets its own result instead of failing the batch.
    let method = |name: &str, route: &str, input: &str, output: &str| {
        tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type(input)
            .output_type(output)
            .codec_path("tonic::codec::ProstCodec")
    };
    let ingest = tonic_build::manual::Service::builder()
        .name("IngestService")
        .package("pairwatch.v1")
        .method(
            method(
                "publish",
                "Publish",
                "crate::proto::pb::ChatEvent",
                "crate::proto::pb::PublishAck",
            )
            .client_streaming()
            .server_streaming()
            .build(),
        )
        .method(
            method(
                "publish_batch",
                "PublishBatch",
                "crate::server::grpc::BatchRequest",
                "crate::proto::pb::PublishBatchResponse",
            )
            .build(),
        )
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .out_dir(&out)
        .compile(&[ingest]);

    println!("cargo:rerun-if-changed=rules");
    // Read at run time: a build script compiled in another checkout (a shared target
    // directory) must list this checkout's rules.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let root = Path::new(&manifest_dir);
    let mut files = Vec::new();
    for sub in ["lexicon", "notices"] {
        println!("cargo:rerun-if-changed=rules/{sub}");
        for entry in std::fs::read_dir(root.join("rules").join(sub))? {
            let name = entry?
                .file_name()
                .into_string()
                .map_err(|_| "non-UTF-8 file name in rules/")?;
            if name.ends_with(".toml") {
                files.push(format!("{sub}/{name}"));
            }
        }
    }
    files.push("escalation.toml".to_string());
    if root.join("rules/grammar.toml").exists() {
        files.push("grammar.toml".to_string());
    }
    files.sort();
    let mut code = String::from("/// The default rule pack: (path in the pack, contents).\npub const EMBEDDED: &[(&str, &str)] = &[\n");
    for f in &files {
        writeln!(
            code,
            "    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/rules/{f}\"))),"
        )?;
    }
    code.push_str("];\n");
    std::fs::write(
        Path::new(&std::env::var("OUT_DIR")?).join("embedded_rules.rs"),
        code,
    )?;
    Ok(())
}

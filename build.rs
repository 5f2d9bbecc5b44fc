//! Generates the protobuf types from `proto/` with the protoc shipped by the
//! `protoc-bin-vendored` crate, so no protoc is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new().compile_protos(
        &[
            "proto/pairwatch/v1/event.proto",
            "proto/pairwatch/v1/alert.proto",
        ],
        &["proto".into(), include],
    )?;
    Ok(())
}

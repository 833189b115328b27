//! Compiles `proto/io/cloudevents/v1/cloudevent.proto` with the vendored `protoc`
//! (no system protobuf compiler needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script binary is
    // reused across checkouts that share a target directory (`env!` pointed at another one).
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("io/cloudevents/v1/cloudevent.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Smaller per-RPC buffers than tonic's default codec (see src/grpc_codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc_codec::SmallBufferCodec")
        .compile_with_config(config, &[file], &[root])?;
    Ok(())
}

//! Compiles `proto/google/pubsub/v1/pubsub.proto` (a subset of Google's: the Subscriber RPCs of
//! the own StreamingPull client, src/pull/) with the vendored `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let file = root.join("google/pubsub/v1/pubsub.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().build_client(true).build_server(false).compile_with_config(
        config,
        &[file],
        &[root],
    )?;
    Ok(())
}

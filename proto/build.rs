//! Compiles `proto/vantage/v1/*.proto` with protox (pure Rust), so building
//! vantage needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/vantage/v1/probe.proto",
        "proto/vantage/v1/coordinator.proto",
        "proto/vantage/v1/agent.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

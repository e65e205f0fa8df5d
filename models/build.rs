//! Compiles the vendored `proto/onnx.proto` to Rust types in pure Rust: protox parses it into a
//! `FileDescriptorSet` and prost-build generates code from that, so no `protoc` is needed.

fn main() {
    let proto = "proto/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = match protox::compile([proto], ["proto"]) {
        Ok(fds) => fds,
        Err(e) => panic!("compiling {proto} with protox: {e}"),
    };
    if let Err(e) = prost_build::Config::new().compile_fds(fds) {
        panic!("generating Rust types for {proto} with prost-build: {e}");
    }
}

//! Compiles the taskd.v1 contract (`proto/` at the repository root) into client
//! stubs in OUT_DIR, plus a descriptor set that taskctl uses to print tasks as
//! proto3 JSON. protoc comes vendored: no system install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_server(false)
        .file_descriptor_set_path(out_dir.join("taskd_descriptor.bin"))
        .compile_protos(&["../../proto/taskd/v1/taskd.proto"], &["../../proto"])?;
    println!("cargo:rerun-if-changed=../../proto");
    Ok(())
}

//! Compiles `proto/` into Rust stubs in OUT_DIR, plus a descriptor set that
//! the reflection service serves. protoc comes vendored: no system install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("taskd_descriptor.bin"))
        .compile_protos(&["proto/taskd/v1/taskd.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    // `sqlx::migrate!` embeds the migration files at compile time, but on a
    // stable compiler it cannot tell cargo about them: without this line a
    // new migration is silently left out of the binary until a clean build.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}

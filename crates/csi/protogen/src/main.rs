//! Compiles `crates/csi/proto/csi.proto` and `crates/csi/proto/pluginregistration.proto` with protox (a protobuf
//! compiler in Rust, so no `protoc`) and tonic-prost-build, and writes the results to `crates/csi/src/proto/`
//! (`csi.v1.rs`, `pluginregistration.rs`), which are committed. Keeping the
//! generator out of the driver's build saves every build of the workspace from compiling protox and prost-build.
#![forbid(unsafe_code)]

use std::error::Error;
use std::path::Path;
use std::process::ExitCode;

/// Each proto file and the file prost-build writes for its package.
const FILES: [(&str, &str); 2] = [
    ("csi.proto", "csi.v1.rs"),
    ("pluginregistration.proto", "pluginregistration.rs"),
];

fn header(proto: &str) -> String {
    format!(
        "// @generated from crates/csi/proto/{proto} by crates/csi/protogen; do not edit.\n\
         // Regenerate: cargo run --manifest-path crates/csi/protogen/Cargo.toml\n"
    )
}

fn main() -> Result<ExitCode, Box<dyn Error>> {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the generator must live in crates/csi/protogen")?;
    let proto_dir = crate_dir.join("proto");
    let mut failed = false;
    for (proto, generated_name) in FILES {
        let target = crate_dir.join("src/proto").join(generated_name);
        let descriptors = protox::compile([proto], [&proto_dir])?;
        let out_dir = std::env::temp_dir().join(format!("csi-protogen-{}", std::process::id()));
        std::fs::create_dir_all(&out_dir)?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .out_dir(&out_dir)
            .compile_fds(descriptors)?;
        let generated = format!(
            "{}{}",
            header(proto),
            std::fs::read_to_string(out_dir.join(generated_name))?
        );
        std::fs::remove_dir_all(&out_dir)?;

        if check {
            let current = std::fs::read_to_string(&target).unwrap_or_default();
            if current != generated {
                eprintln!(
                    "{} is out of date; run: cargo run --manifest-path crates/csi/protogen/Cargo.toml",
                    target.display()
                );
                failed = true;
            } else {
                println!("{} is up to date", target.display());
            }
        } else {
            std::fs::write(&target, generated)?;
            println!("wrote {}", target.display());
        }
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! Hands the Temporal descriptor set that `temporalio-protos` exports to the compiler, so the
//! proxy can build its payload schema from it at start-up (`src/payload/descriptors.rs`).

use std::path::PathBuf;

fn main() {
    let descriptor_path = std::env::var("DEP_TEMPORALIO_PROTOS_DESCRIPTOR_PATH")
        .expect("temporalio-protos exports its descriptor set to dependents");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={descriptor_path}");
    println!("cargo:rustc-env=TEMPORAL_CODEC_PROXY_DESCRIPTORS={descriptor_path}");
    println!("cargo:rustc-env=TEMPORAL_CODEC_PROXY_API_VERSION={}", protos_version());
}

/// `temporalio-protos <version>` as the lock file pins it.
fn protos_version() -> String {
    let lock = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"temporalio-protos\""
            && let Some(version) = lines.next().and_then(|next| next.strip_prefix("version = "))
        {
            return format!("temporalio-protos {}", version.trim_matches('"'));
        }
    }
    "temporalio-protos".to_owned()
}

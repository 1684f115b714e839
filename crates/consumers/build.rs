//! Links the two binaries without `libgcc_s.so.1`: they start on every image pull, and
//! on virtual machines loading that one library costs about a fifth of a millisecond
//! (mostly `__cpu_indicator_init`'s `cpuid` instructions, which trap to the hypervisor,
//! and the page faults of mapping it). The standard library names `-lgcc_s` for its
//! unwinder; a linker script of that name in a search directory ahead of gcc's own
//! hands the linker the static unwinder `libgcc_eh.a` instead, as `gcc -static-libgcc`
//! does for C programs. glibc stays dynamic, so name resolution (NSS) works as the
//! system configures it. Only this package's binaries are linked this way
//! (`rustc-link-arg-bins`), not its tests nor what depends on it.
//!
//! No crate does this, and Cargo has no setting for it: hence these lines.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|feature| feature == "crt-static");
    // Only where the standard library links libgcc_s: glibc Linux, dynamically.
    if target_os != "linux" || target_env != "gnu" || crt_static {
        return;
    }
    let directory = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("static-libgcc");
    std::fs::create_dir_all(&directory).expect("create the linker script's directory");
    std::fs::write(directory.join("libgcc_s.so"), "INPUT ( -lgcc_eh )\n")
        .expect("write the linker script");
    println!("cargo:rustc-link-arg-bins=-L{}", directory.display());
}

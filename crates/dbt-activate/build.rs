//! When linking the prebuilt DuckDB library (DUCKDB_LIB_DIR, set by .cargo/config.toml to the
//! copy scripts/bootstrap.sh installs), record its folder as an rpath so the binary and the
//! tests find libduckdb.so without LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        return;
    }
    if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
        let dir = std::path::PathBuf::from(dir);
        if let Ok(dir) = dir.canonicalize() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}

//! `pip install dbt-activate`: the wheel built from this repo (scripts/build-wheel.sh,
//! maturin `bin` bindings) installs into a fresh virtual environment and runs on its own,
//! with the DuckDB library it carries, not the one the tests link.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dbt_activate_e2e::{Project, repo_root, run_with_timeout};

use crate::common::*;

/// Builds the wheel (the `wheel` profile: target/wheel, apart from the binary the other tests
/// run, which maturin would otherwise patch in place) and installs
/// it, offline, into a new virtual environment; returns the environment's `bin/`.
fn install_wheel(dir: &Path) -> PathBuf {
    let wheels = dir.join("wheels");
    let build = run_with_timeout(
        Command::new("bash")
            .arg(repo_root().join("scripts/build-wheel.sh"))
            .args(["--profile", "wheel", "--out"])
            .arg(&wheels),
        Duration::from_secs(900),
    );
    build.assert_success();
    let wheel = std::fs::read_dir(&wheels)
        .expect("the wheel folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a .whl file");
    let name = wheel
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("dbt_activate-") && name.contains("manylinux"),
        "a manylinux wheel named after the package: {name}"
    );

    let venv = dir.join("venv");
    run_with_timeout(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        Duration::from_secs(120),
    )
    .assert_success();
    run_with_timeout(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--no-index",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(&wheel),
        Duration::from_secs(300),
    )
    .assert_success();
    venv.join("bin")
}

#[test]
fn the_wheel_installs_into_a_fresh_venv_and_runs_the_quickstart_on_its_own() {
    let scratch = tempfile::tempdir().expect("a temporary folder");
    let bin = install_wheel(scratch.path());
    let installed = bin.join("dbt-activate");

    let version = run_with_timeout(
        Command::new(&installed)
            .arg("--version")
            .env_remove("LD_LIBRARY_PATH"),
        Duration::from_secs(30),
    );
    version.assert_success();
    version
        .assert_contains(&format!("dbt-activate {}", env!("CARGO_PKG_VERSION")))
        .assert_contains("v12");

    // The quickstart's run on the built example: every sync lands, with the installed binary
    // and without the tests' libduckdb on the library path.
    let p = Project::new();
    let out = p
        .activate_cmd_with(&installed, &[], &["run", "--target", "ci"])
        .env_remove("LD_LIBRARY_PATH")
        .run();
    out.assert_success();
    assert_eq!(leads_in_postgres(&p), leads_in_model(&p));
    assert_eq!(segment_in_postgres(&p), segment_in_model(&p));
}

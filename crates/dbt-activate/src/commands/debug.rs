//! `dbt-activate debug`: like `dbt debug`, checks the configuration and every connection.

use std::sync::Arc;

use activate_executor::connections;
use activate_executor::destination;
use activate_executor::warehouse;

use crate::ExitStatus;
use crate::cli::CommonArgs;
use crate::output;

pub async fn debug(args: CommonArgs) -> anyhow::Result<ExitStatus> {
    let mut ok = true;
    let mut check = |what: &str, result: Result<String, String>| match result {
        Ok(detail) => output::line(&format!("  {what}: OK {detail}")),
        Err(why) => {
            ok = false;
            output::line(&format!("  {what}: ERROR {why}"));
        }
    };
    output::line(&format!(
        "dbt-activate version: {}",
        env!("CARGO_PKG_VERSION")
    ));
    let project_dir = std::path::absolute(&args.project_dir)?;
    let settings = connections::load_project(&project_dir, args.target_path.as_deref())?;
    check(
        "dbt_project.yml",
        Ok(format!(
            "(project {}, profile {})",
            settings.project_name, settings.profile_name
        )),
    );
    let profile = connections::load_profile(
        &settings,
        args.profiles_dir.as_deref(),
        args.target.as_deref(),
    )?;
    check(
        "profiles.yml",
        Ok(format!(
            "({}, target {})",
            profile.profiles_file.display(),
            profile.target_name
        )),
    );
    let manifest = settings.target_path.join("manifest.json");
    check(
        "manifest.json",
        activate_manifest::Manifest::from_path(&manifest)
            .map(|m| format!("({} models)", m.models().count()))
            .map_err(|e| e.to_string()),
    );
    match warehouse::open(&profile.warehouse) {
        Ok(wh) => {
            let wh: Arc<dyn warehouse::Warehouse> = Arc::from(wh);
            let location = wh.describe_location();
            let probe = wh.clone();
            let result = tokio::task::spawn_blocking(move || probe.health_check()).await?;
            check(
                "warehouse",
                result
                    .map(|_| format!("({location})"))
                    .map_err(|e| e.message),
            );
        }
        Err(e) => check("warehouse", Err(e.to_string())),
    }
    let activate =
        connections::load_activate_yml(&project_dir, &profile.target_name, &profile.profile_name)?;
    check(
        "activate.yml",
        Ok(format!("({} destinations)", activate.destinations.len())),
    );
    for (name, config) in &activate.destinations {
        let result = match destination::build(config, &project_dir) {
            Ok(dest) => {
                let identity = dest.identity();
                match tokio::time::timeout(std::time::Duration::from_secs(15), dest.health_check())
                    .await
                {
                    Ok(Ok(())) => Ok(format!("({} {identity})", dest.kind())),
                    Ok(Err(e)) => Err(e.message),
                    Err(_) => Err(format!("{identity} did not answer within 15s")),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        check(&format!("destination {name}"), result);
    }
    if ok {
        output::line("All checks passed!");
        Ok(ExitStatus::Success)
    } else {
        output::line("Some checks failed (see ERROR above).");
        Ok(ExitStatus::Error)
    }
}

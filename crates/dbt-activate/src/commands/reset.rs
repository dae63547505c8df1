//! `dbt-activate reset --select ...`: forget the state of syncs; their next run resends all.

use anyhow::bail;

use crate::ExitStatus;
use crate::cli::CommonArgs;
use crate::output;
use crate::project;

pub fn reset(args: CommonArgs) -> anyhow::Result<ExitStatus> {
    if args.select.is_empty() {
        bail!(
            "reset needs --select naming the syncs to forget\n  hint: `dbt-activate reset --select enriched_leads` (a model selects all its syncs)"
        );
    }
    let loaded = project::load(&args)?;
    let selected = project::select(&loaded, &args)?;
    let store = crate::state_store::open(&loaded, None)?;
    for &i in &selected {
        let name = &loaded.specs[i].name;
        let existed =
            crate::state_store::blocking(|| store.reset(&loaded.profile.target_name, name))?;
        output::line(&format!(
            "{} {name} (target {}){}",
            if existed {
                "Forgot the state of"
            } else {
                "No state to forget for"
            },
            loaded.profile.target_name,
            if existed {
                ": the next run sends every row"
            } else {
                ""
            }
        ));
    }
    Ok(ExitStatus::Success)
}

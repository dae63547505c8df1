//! `activate.yml`: destination connections, with per-target overrides.
//!
//! ```yaml
//! destinations:
//!   crm: {type: file, path: synced/crm, format: jsonl}
//! targets:
//!   prod:
//!     destinations:
//!       crm: {type: postgres, url: "{{ env_var('CRM_URL') }}"}
//! ```
//! A target's destinations replace those of the same name. Only the destinations of the chosen
//! target are rendered, so a production `env_var()` need not be set for a dev run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use activate_manifest::did_you_mean;

use crate::connections::read_yaml;
use crate::connections::render::{RenderContext, render_yaml};
use crate::error::ConfigError;
use crate::secrets;

const TOP_KEYS: &[&str] = &["destinations", "targets", "syncs", "alerts", "state"];

#[derive(Debug, Clone)]
pub struct ActivateConfig {
    pub file: PathBuf,
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// `syncs:`: syncs defined by a SQL query, unrendered (their `ref()`s need the manifest).
    pub syncs: BTreeMap<String, serde_yaml_ng::Value>,
    /// What templates in activate.yml see (`target.name`, ...).
    pub render_context: RenderContext,
    /// `alerts:`: which run outcomes reach people, and through which destinations.
    pub alerts: Option<crate::alerts::AlertRules>,
    /// `state:`: where the sync state lives (local files by default, or the warehouse).
    pub state: crate::state::StateConfig,
}

impl ActivateConfig {
    pub fn names(&self) -> BTreeSet<String> {
        self.destinations.keys().cloned().collect()
    }
}

/// One destination's rendered settings; each destination type parses its own keys.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: String,
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// `activate.yml`, for error messages.
    pub file: String,
}

impl DestinationConfig {
    /// Where this destination is defined, for errors: `activate.yml, destinations.crm`.
    pub fn site(&self) -> String {
        format!("{}, destinations.{}", self.file, self.name)
    }
}

pub fn load_activate_yml(
    project_dir: &Path,
    target_name: &str,
    profile_name: &str,
) -> Result<ActivateConfig, ConfigError> {
    let file = project_dir.join("activate.yml");
    if !file.is_file() {
        return Err(
            ConfigError::new(format!("no activate.yml in {}", project_dir.display())).with_hint(
                "create activate.yml with a `destinations:` mapping (see docs/activate-yml.md)",
            ),
        );
    }
    let yaml = read_yaml(&file)?;
    let shown = "activate.yml";
    let Some(top) = yaml.as_mapping() else {
        return Err(ConfigError::new(format!(
            "{shown}: expected a mapping with `destinations:` at the top"
        )));
    };
    for key in top.keys() {
        let key = key.as_str().unwrap_or("?");
        if !TOP_KEYS.contains(&key) {
            let hint = match did_you_mean(key, TOP_KEYS.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("valid top-level keys: {}", TOP_KEYS.join(", ")),
            };
            return Err(
                ConfigError::new(format!("{shown}: unknown top-level key `{key}`")).with_hint(hint),
            );
        }
    }
    let mut chosen: BTreeMap<String, serde_yaml_ng::Value> = BTreeMap::new();
    if let Some(base) = yaml.get("destinations") {
        merge_destinations(&mut chosen, base, shown, "destinations")?;
    }
    if let Some(targets) = yaml.get("targets") {
        let Some(targets) = targets.as_mapping() else {
            return Err(ConfigError::new(format!(
                "{shown}: `targets:` must map dbt target names to overrides"
            )));
        };
        if let Some(over) = targets.get(target_name) {
            for key in over.as_mapping().into_iter().flat_map(|m| m.keys()) {
                if key.as_str() != Some("destinations") {
                    return Err(ConfigError::new(format!(
                        "{shown}: targets.{target_name}: unknown key `{}`",
                        key.as_str().unwrap_or("?")
                    ))
                    .with_hint("a target override holds `destinations:`"));
                }
            }
            if let Some(dests) = over.get("destinations") {
                merge_destinations(
                    &mut chosen,
                    dests,
                    shown,
                    &format!("targets.{target_name}.destinations"),
                )?;
            }
        }
    }
    let mut ctx = RenderContext::default();
    ctx.target.insert("name".into(), target_name.to_owned());
    ctx.target
        .insert("profile_name".into(), profile_name.to_owned());
    let mut destinations = BTreeMap::new();
    for (name, raw) in chosen {
        let rendered = render_yaml(&raw, &ctx, shown).map_err(|e| ConfigError {
            message: format!("{} (destination `{name}`)", e.message),
            hint: e.hint,
        })?;
        secrets::register_in(&rendered);
        let serde_json::Value::Object(mut settings) = rendered else {
            return Err(ConfigError::new(format!(
                "{shown}: destination `{name}` must be a mapping with `type:`"
            )));
        };
        let kind = match settings.remove("type") {
            Some(serde_json::Value::String(k)) => k,
            _ => {
                return Err(ConfigError::new(format!(
                    "{shown}: destination `{name}` has no `type:`"
                ))
                .with_hint(format!(
                    "add `type:` (one of: {})",
                    crate::destination::KINDS.join(", ")
                )));
            }
        };
        destinations.insert(
            name.clone(),
            DestinationConfig {
                name,
                kind,
                settings,
                file: shown.to_owned(),
            },
        );
    }
    let mut syncs = BTreeMap::new();
    if let Some(value) = yaml.get("syncs") {
        let Some(map) = value.as_mapping() else {
            return Err(ConfigError::new(format!("{shown}: `syncs` must map sync names to their settings"))
                .with_hint("syncs: {hot_leads_to_crm: {query: \"select ... from {{ ref('enriched_leads') }}\", destination: crm, object: Lead, primary_key: email}}"));
        };
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                return Err(ConfigError::new(format!(
                    "{shown}: `syncs` has a non-string name"
                )));
            };
            syncs.insert(name.to_owned(), v.clone());
        }
    }
    let alerts = match yaml.get("alerts") {
        None | Some(serde_yaml_ng::Value::Null) => None,
        Some(value) => Some(crate::alerts::AlertRules::parse(
            value,
            &destinations,
            shown,
        )?),
    };
    let state = crate::state::StateConfig::parse(yaml.get("state"), shown)?;
    Ok(ActivateConfig {
        file,
        destinations,
        syncs,
        render_context: ctx,
        alerts,
        state,
    })
}

fn merge_destinations(
    into: &mut BTreeMap<String, serde_yaml_ng::Value>,
    value: &serde_yaml_ng::Value,
    file: &str,
    at: &str,
) -> Result<(), ConfigError> {
    let Some(map) = value.as_mapping() else {
        return Err(ConfigError::new(format!(
            "{file}: `{at}` must map destination names to settings"
        )));
    };
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            return Err(ConfigError::new(format!(
                "{file}: `{at}` has a non-string name"
            )));
        };
        into.insert(name.to_owned(), v.clone());
    }
    Ok(())
}

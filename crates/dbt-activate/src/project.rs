//! Loading a project for a command: dbt_project.yml, the profile, activate.yml, the manifest
//! and the activation specs; then, for commands that touch data, the preflight that probes the
//! warehouse and the destinations before anything is sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use activate_executor::connections::{self, ActivateConfig, Profile, ProjectSettings};
use activate_executor::destination::schema::FieldMismatch;
use activate_executor::destination::{self, Destination, Kind, ObjectSchema, SyncShape, WriteOp};
use activate_executor::runner::{Planned, SyncJob};
use activate_executor::sync::{FieldSource, SyncDefinition};
use activate_executor::warehouse::{self, Warehouse};
use activate_manifest::{ActivationSpec, Manifest, OnDelete, Operation, RunResults, SyncMode};
use anyhow::{Context, anyhow, bail};

use crate::cli::CommonArgs;

pub struct Loaded {
    pub settings: ProjectSettings,
    pub profile: Profile,
    pub activate: ActivateConfig,
    pub manifest: Manifest,
    pub specs: Vec<ActivationSpec>,
    pub state_dir: PathBuf,
}

/// A manifest of this many nodes or more is not freed where it is dropped (see `Drop for Loaded`).
const FREE_IN_BACKGROUND_FROM: usize = 10_000;

/// Whether a large manifest is freed when its `Loaded` is dropped: only for `serve`, which
/// loads the project again for each run (see [`keep_large_manifests_until_exit`]).
static FREE_LARGE_MANIFESTS: AtomicBool = AtomicBool::new(true);

/// For a command that ends the process when it is done: a large manifest is left to the
/// operating system, which takes the memory back at exit at once. Freeing it (some 900,000
/// allocations for 10,000 models, on a thread of its own) while the process exited made
/// `ls` slower in four trials of five (medians of 21 runs: by 8 to 21 ms; once 2 ms faster;
/// docs/performance.md): at exit the allocator handed the freed pages back to the kernel.
pub fn keep_large_manifests_until_exit() {
    FREE_LARGE_MANIFESTS.store(false, Ordering::Relaxed);
}

/// Freeing a 10,000-model manifest takes about 30 ms: no command waits for it. `serve` frees
/// it on a thread of its own (not joined; when the process exits first, the operating system
/// takes the memory back); any other command leaves it to the operating system.
impl Drop for Loaded {
    fn drop(&mut self) {
        if self.manifest.nodes.len() >= FREE_IN_BACKGROUND_FROM {
            let manifest = std::mem::take(&mut self.manifest);
            if !FREE_LARGE_MANIFESTS.load(Ordering::Relaxed) {
                std::mem::forget(manifest);
                return;
            }
            // If no thread can be started, the closure (and the manifest) is dropped here.
            let _ = std::thread::Builder::new()
                .name("free-manifest".into())
                .spawn(move || drop(manifest));
        }
    }
}

impl Loaded {
    pub fn unique_id(&self, spec: &ActivationSpec) -> String {
        spec.unique_id(&self.settings.project_name)
    }
}

pub fn load(common: &CommonArgs) -> anyhow::Result<Loaded> {
    let project_dir = std::path::absolute(&common.project_dir)
        .with_context(|| format!("project dir {}", common.project_dir.display()))?;
    let settings = connections::load_project(&project_dir, common.target_path.as_deref())?;
    let profile = connections::load_profile(
        &settings,
        common.profiles_dir.as_deref(),
        common.target.as_deref(),
    )?;
    let activate =
        connections::load_activate_yml(&project_dir, &profile.target_name, &profile.profile_name)?;
    let manifest_path = settings.target_path.join("manifest.json");
    if !manifest_path.is_file() {
        bail!(
            "no manifest.json in {}\n  hint: run `dbt build` (or `dbt parse`) in the project first; dbt-activate reads what dbt wrote",
            settings.target_path.display()
        );
    }
    let manifest = Manifest::from_path(&manifest_path)?;
    let model_specs = activate_manifest::extract_specs(&manifest, &activate.names())
        .map_err(|e| anyhow!("{e}"))?;
    let queries = connections::render_query_syncs(&activate, &manifest, &settings)?;
    let specs = activate_manifest::add_query_specs(
        &settings.project_name,
        model_specs,
        &queries,
        &activate.names(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let state_dir = match &common.state_dir {
        Some(dir) => std::path::absolute(dir)?,
        None => project_dir.join(".dbt-activate"),
    };
    Ok(Loaded {
        settings,
        profile,
        activate,
        manifest,
        specs,
        state_dir,
    })
}

/// The specs `--select` / `--exclude` pick, by index.
pub fn select(loaded: &Loaded, args: &CommonArgs) -> anyhow::Result<Vec<usize>> {
    activate_graph::ProjectGraph::new(&loaded.manifest, &loaded.specs)
        .select(&args.select, &args.exclude)
        .map_err(|e| anyhow!("{e}"))
}

/// `run_results.json`, if dbt wrote one.
pub fn run_results(loaded: &Loaded) -> anyhow::Result<Option<RunResults>> {
    let path = loaded.settings.target_path.join("run_results.json");
    if !path.is_file() {
        return Ok(None);
    }
    Ok(Some(RunResults::from_path(&path)?))
}

/// The destination a sync writes to, with its state identity.
pub fn destination_identity(spec: &ActivationSpec, dest: &dyn Destination) -> String {
    format!(
        "{}|{}|{}|{}",
        spec.destination,
        dest.kind(),
        dest.identity(),
        spec.object
    )
}

/// Probes the warehouse (zero-row) and the destinations for every ready sync; every problem is
/// collected and reported together, before anything is sent anywhere.
pub async fn preflight(
    loaded: &Loaded,
    ready: &[usize],
) -> anyhow::Result<(Option<Arc<dyn Warehouse>>, BTreeMap<usize, SyncJob>)> {
    let mut jobs = BTreeMap::new();
    if ready.is_empty() {
        return Ok((None, jobs));
    }
    // With the state in the warehouse, a DuckDB file is opened read-write (the state tables).
    let keeps_state = loaded.activate.state.in_warehouse();
    let warehouse: Arc<dyn Warehouse> = Arc::from(warehouse::open_with(
        &loaded.profile.warehouse,
        keeps_state,
    )?);
    // One clear error for an unreachable warehouse, instead of one per model.
    let probe = warehouse.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || probe.health_check()).await? {
        bail!("{}", e.message);
    }
    let mut destinations: BTreeMap<String, Arc<dyn Destination>> = BTreeMap::new();
    for &i in ready {
        let name = &loaded.specs[i].destination;
        if !destinations.contains_key(name) {
            let config = &loaded.activate.destinations[name];
            destinations.insert(
                name.clone(),
                destination::build(config, &loaded.settings.project_dir)?,
            );
        }
    }
    let mut problems: Vec<String> = Vec::new();
    for &i in ready {
        let spec = &loaded.specs[i];
        let relation = match &spec.query {
            // A query sync reads its query as a subquery; filters wrap it.
            Some(sql) => Some(format!("({sql}) AS activate_query")),
            None => loaded
                .manifest
                .nodes
                .get(&spec.model_id)
                .and_then(|n| n.relation_name.clone()),
        };
        let Some(relation) = relation else {
            problems.push(format!(
                "model `{}` has no relation in the manifest (ephemeral models cannot be synced)",
                spec.model_name
            ));
            continue;
        };
        let wh = warehouse.clone();
        let rel = relation.clone();
        let columns = match tokio::task::spawn_blocking(move || wh.columns(&rel)).await? {
            Ok(c) => c,
            Err(e) if spec.query.is_some() => {
                problems.push(format!(
                    "sync `{}` (activate.yml): its query failed in the warehouse: {}\n  hint: run the query in your warehouse to fix it; refs were rendered to: {}",
                    spec.name, e.message, spec.query.as_deref().unwrap_or_default()
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!(
                    "model `{}`: could not read {relation}: {}\n  hint: run `dbt build` so the relation exists (or check --target)",
                    spec.model_name, e.message
                ));
                continue;
            }
        };
        let def = match SyncDefinition::resolve(spec, loaded.unique_id(spec), relation, &columns) {
            Ok(d) => d,
            Err(errs) => {
                problems.extend(errs);
                continue;
            }
        };
        let dest = destinations[&spec.destination].clone();
        match dest.describe(&spec.object).await {
            Ok(Some(schema)) => {
                let mapped = def
                    .fields
                    .iter()
                    .zip(&def.field_sources)
                    .map(|(field, source)| (field.as_str(), source_kind(&def, source)));
                for mismatch in destination::schema::check_fields(&schema, mapped) {
                    problems.push(describe_mismatch(spec, &def, &schema, mismatch));
                }
            }
            Ok(None) => {}
            Err(e) => problems.push(format!(
                "sync `{}`: destination `{}`: {}",
                spec.name, spec.destination, e.message
            )),
        }
        let shape = SyncShape {
            object: &spec.object,
            op: match spec.operation {
                Operation::Upsert => WriteOp::Upsert,
                Operation::Update => WriteOp::Update,
                Operation::Insert => WriteOp::Insert,
            },
            removal: match (spec.sync_mode, spec.on_delete) {
                (SyncMode::Mirror, OnDelete::Delete) => Some(WriteOp::Delete),
                (SyncMode::Mirror, OnDelete::Clear) => Some(WriteOp::Clear),
                _ => None,
            },
            fields: &def.fields,
            key_fields: &spec.match_on,
        };
        if let Err(why) = dest.check_sync(&shape) {
            problems.push(format!(
                "sync `{}` ({}): destination `{}` ({}) cannot carry it out: {why}",
                spec.name,
                spec.defined_in,
                spec.destination,
                dest.kind()
            ));
        }
        let identity = destination_identity(spec, dest.as_ref());
        jobs.insert(
            i,
            SyncJob {
                def: Arc::new(def),
                destination: dest,
                destination_identity: identity,
            },
        );
    }
    if !problems.is_empty() {
        let n = problems.len();
        bail!(
            "{n} problem{} found before sending anything:\n- {}",
            if n == 1 { "" } else { "s" },
            problems.join("\n- ")
        );
    }
    Ok((Some(warehouse), jobs))
}

/// The kind of value that feeds a destination field.
fn source_kind(def: &SyncDefinition, source: &FieldSource) -> Kind {
    match source {
        FieldSource::Column(i) => Kind::of_column_type(&def.read_columns[*i].data_type),
        FieldSource::Literal(value) => Kind::of_value(value),
        FieldSource::Template(_) => Kind::Text,
    }
}

/// One field that does not fit its destination object, by model (or sync), schema file and
/// column, with what to do about it.
fn describe_mismatch(
    spec: &ActivationSpec,
    def: &SyncDefinition,
    schema: &ObjectSchema,
    mismatch: FieldMismatch,
) -> String {
    let site = match spec.query {
        Some(_) => format!("sync `{}` (activate.yml)", spec.name),
        None => format!("model `{}` ({})", spec.model_name, spec.defined_in),
    };
    match mismatch {
        FieldMismatch::Missing { field, closest } => {
            let hint = match closest {
                Some(close) => format!("did you mean `{close}`?"),
                None => {
                    let names: Vec<&str> = schema.names().collect();
                    format!("{} has: {}", spec.object, names.join(", "))
                }
            };
            format!(
                "{site}: destination field `{field}` does not exist in {}.{}\n  hint: {hint}",
                spec.destination, spec.object
            )
        }
        FieldMismatch::WrongType {
            field,
            field_kind,
            native_type,
            column_kind,
        } => {
            let position = def.fields.iter().position(|f| *f == field);
            let source = match position.map(|p| &def.field_sources[p]) {
                Some(FieldSource::Column(i)) => {
                    let column = &def.read_columns[*i];
                    format!("column `{}` ({})", column.name, column.data_type)
                }
                Some(FieldSource::Literal(_)) => "a literal value".to_owned(),
                _ => "a template".to_owned(),
            };
            format!(
                "{site}: {source} is {} but destination field `{field}` of {}.{} is {} ({native_type})\n  hint: cast the column in the model (e.g. `cast(... as {})`) or map it to a field of a matching type",
                column_kind.as_str(),
                spec.destination,
                spec.object,
                field_kind.as_str(),
                cast_target(field_kind)
            )
        }
    }
}

fn cast_target(kind: Kind) -> &'static str {
    match kind {
        Kind::Integer => "bigint",
        Kind::Number => "double",
        Kind::Boolean => "boolean",
        Kind::Date => "date",
        Kind::DateTime => "timestamp",
        Kind::Json => "json",
        Kind::Text | Kind::Any => "varchar",
    }
}

/// Turns gated, preflighted syncs into the runner's work list (in selection order).
pub fn planned_items(
    loaded: &Loaded,
    selected: &[usize],
    skips: &BTreeMap<usize, String>,
    mut jobs: BTreeMap<usize, SyncJob>,
) -> Vec<Planned> {
    selected
        .iter()
        .map(|&i| match (skips.get(&i), jobs.remove(&i)) {
            (None, Some(job)) => Planned::Run(job),
            (reason, _) => {
                Planned::Skip(Box::new(activate_executor::results::SyncResult::skipped(
                    loaded.unique_id(&loaded.specs[i]),
                    &loaded.specs[i],
                    reason.map(String::as_str).unwrap_or("not prepared"),
                )))
            }
        })
        .collect()
}

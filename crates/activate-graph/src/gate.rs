//! Gating a sync on the last dbt invocation (`run_results.json`).

use activate_manifest::{ActivationSpec, Invocation, NodeResult, RunResults};

use crate::graph::ProjectGraph;

/// Whether a sync may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Ready,
    /// Reported as SKIP with this reason, e.g. `test unique_x failed`.
    Skip {
        reason: String,
    },
}

/// What a model absent from the last dbt invocation means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatePolicy {
    /// `--include-unbuilt`: sync models that the last invocation did not build (and every model
    /// when there is no `run_results.json`, or it comes from `dbt compile`) from their existing
    /// relations. Failed builds and failed tests still skip.
    pub include_unbuilt: bool,
}

/// Model statuses that mean "built" (`pass` is tolerated from odd adapters).
const BUILT: &[&str] = &["success", "no-op", "reused", "pass"];

/// Decides whether `spec`'s model may be synced according to the last dbt invocation.
///
/// - built (success / no-op / reused) and no attached test failed or errored: `Ready`
///   (`warn` tests pass; tests absent from run_results are fine);
/// - a test failed or errored: `Skip "test <name> failed"` (or `errored`);
/// - build error: `Skip "model failed to build: <first line of the message>"`;
/// - skipped by dbt: `Skip "upstream model <name> failed"` (or the failed upstream test);
/// - absent: `Skip "not built in the last dbt invocation"`, or `Ready` with `include_unbuilt`;
/// - no run_results, or one from `dbt compile` / `dbt docs generate`: `Ready` with
///   `include_unbuilt`, else `Skip` saying so.
pub fn gate(
    graph: &ProjectGraph,
    run_results: Option<&RunResults>,
    spec: &ActivationSpec,
    policy: GatePolicy,
) -> Gate {
    let Some(results) = run_results else {
        return if policy.include_unbuilt {
            Gate::Ready
        } else {
            skip(
                "there is no run_results.json from a dbt build; run `dbt build` first, \
                 or pass --include-unbuilt to sync the existing relations",
            )
        };
    };
    if results.invocation() == Invocation::ProvesNothing {
        if policy.include_unbuilt {
            return Gate::Ready;
        }
        return skip(&match command_label(results) {
            Some(command) => format!(
                "the last dbt invocation was `{command}`, which builds nothing; run `dbt build`"
            ),
            None => "the last dbt invocation built nothing; run `dbt build`".to_owned(),
        });
    }
    if spec.query.is_some() {
        // A query sync is gated on every node it reads, like a model on itself. Sources are
        // not built by dbt and gate nothing.
        for parent in &spec.parents {
            if graph.manifest().sources.contains_key(parent) {
                continue;
            }
            if let Gate::Skip { reason } = gate_node(graph, results, parent, policy) {
                return skip(&format!("{}: {reason}", graph.label(parent)));
            }
        }
        return Gate::Ready;
    }
    gate_node(graph, results, &spec.model_id, policy)
}

/// The gate of one built node (a model, or a node a query sync reads).
fn gate_node(graph: &ProjectGraph, results: &RunResults, node: &str, policy: GatePolicy) -> Gate {
    match result_of(results, node) {
        Some(result) if BUILT.contains(&result.status.as_str()) => tests_gate(graph, results, node),
        Some(result) if matches!(result.status.as_str(), "error" | "fail" | "runtime error") => {
            let first_line = result
                .message
                .as_deref()
                .and_then(|m| m.lines().map(str::trim).find(|l| !l.is_empty()));
            match first_line {
                Some(line) => skip(&format!("model failed to build: {line}")),
                None => skip("model failed to build"),
            }
        }
        Some(result) if result.status == "skipped" => skip(&upstream_failure(graph, results, node)),
        Some(result) => skip(&format!(
            "model has status `{}` in run_results.json, which is not a successful build",
            result.status
        )),
        None if policy.include_unbuilt => tests_gate(graph, results, node),
        None => skip("not built in the last dbt invocation"),
    }
}

fn skip(reason: &str) -> Gate {
    Gate::Skip {
        reason: reason.to_owned(),
    }
}

fn result_of<'r>(results: &'r RunResults, unique_id: &str) -> Option<&'r NodeResult> {
    results.results.iter().find(|r| r.unique_id == unique_id)
}

/// `dbt compile`, `dbt docs generate`, ... from `args.which`.
fn command_label(results: &RunResults) -> Option<String> {
    match results.command()? {
        "generate" => Some("dbt docs generate".to_owned()),
        "serve" => Some("dbt docs serve".to_owned()),
        other => Some(format!("dbt {other}")),
    }
}

/// Skip when a test attached to the model failed or errored.
fn tests_gate(graph: &ProjectGraph, results: &RunResults, node: &str) -> Gate {
    let problems = failed_tests(graph, results, node);
    if problems.is_empty() {
        Gate::Ready
    } else {
        let reasons: Vec<String> = problems
            .iter()
            .map(|(name, verb)| format!("test {name} {verb}"))
            .collect();
        skip(&reasons.join("; "))
    }
}

/// `(test name, "failed" | "errored")` for the tests of a node that did not pass.
fn failed_tests(
    graph: &ProjectGraph,
    results: &RunResults,
    unique_id: &str,
) -> Vec<(String, &'static str)> {
    graph
        .manifest()
        .tests_of(unique_id)
        .filter_map(|test| {
            let verb = match result_of(results, &test.unique_id)?.status.as_str() {
                "fail" => "failed",
                "error" | "runtime error" => "errored",
                _ => return None,
            };
            Some((test.name.clone(), verb))
        })
        .collect()
}

/// Why dbt skipped the model: the nearest upstream node that failed, or a test on it.
fn upstream_failure(graph: &ProjectGraph, results: &RunResults, node: &str) -> String {
    for ancestor in graph.ancestors_of(node) {
        if let Some(result) = result_of(results, ancestor)
            && matches!(result.status.as_str(), "error" | "fail" | "runtime error")
        {
            return format!("upstream {} failed", graph.label(ancestor));
        }
        if let Some((test, verb)) = failed_tests(graph, results, ancestor).first() {
            return format!("test {test} on upstream {} {verb}", graph.label(ancestor));
        }
    }
    "upstream model failed".to_owned()
}

#[cfg(test)]
#[path = "gate/tests.rs"]
mod tests;

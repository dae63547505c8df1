//! What can go wrong when selecting and ordering syncs, each with a hint.

use activate_manifest::did_you_mean;

/// Selecting or ordering syncs failed. Each message is one sentence followed by a `hint:` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A selector that matches no node and no sync at all (usually a typo).
    #[error(
        "selector `{selector}` matches no model, seed, snapshot, source or sync in this project\n  hint: {hint}"
    )]
    UnknownSelector { selector: String, hint: String },

    /// A `method:value` selector whose method this tool does not know.
    #[error("selector `{selector}` uses the unknown selection method `{method}`\n  hint: {hint}")]
    UnknownMethod {
        selector: String,
        method: String,
        hint: String,
    },

    /// A selector that cannot be parsed (e.g. a lone `+`, or `@` combined with `+x`).
    #[error("selector `{selector}` is not valid: {reason}\n  hint: {hint}")]
    InvalidSelector {
        selector: String,
        reason: String,
        hint: String,
    },

    /// An `after:` entry that names neither a sync nor a model.
    #[error(
        "sync `{sync}` ({file}) has `after: {name}`, which names neither a sync nor a model\n  hint: {hint}"
    )]
    UnknownAfter {
        sync: String,
        file: String,
        name: String,
        hint: String,
    },

    /// Syncs that wait for each other, through model lineage or `after:`.
    /// `path` starts and ends with the same sync; each runs before the next.
    #[error("{}", cycle_message(path, links))]
    Cycle {
        path: Vec<String>,
        /// One line per step of `path`, saying why the second sync waits for the first.
        links: Vec<String>,
    },
}

fn cycle_message(path: &[String], links: &[String]) -> String {
    let mut text = format!(
        "syncs wait for each other in a cycle: {} (each must finish before the next)",
        path.join(" -> ")
    );
    for link in links {
        text.push_str("\n  - ");
        text.push_str(link);
    }
    text.push_str(
        "\n  hint: remove one of the `after:` entries in this cycle; lineage order cannot be changed",
    );
    text
}

/// Names close to `input`: the `did_you_mean` best first, then others that are a small edit
/// away or contain it (case-insensitive). At most `max`, deduplicated.
pub(crate) fn close_names<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<&'a str> {
    let mut unique: Vec<&str> = candidates.into_iter().collect();
    unique.sort_unstable();
    unique.dedup();
    let lower = input.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = unique
        .iter()
        .filter_map(|c| {
            let other = c.to_ascii_lowercase();
            let distance = strsim::levenshtein(&lower, &other);
            let close = distance <= 3.max(other.len() / 3) && distance < other.len().max(1);
            let contains = lower.len() >= 3 && (other.contains(&lower) || lower.contains(&other));
            (close || contains).then_some((distance, *c))
        })
        .collect();
    scored.sort();
    let mut out: Vec<&str> = Vec::new();
    if let Some(best) = did_you_mean(input, unique.iter().copied()) {
        out.push(best);
    }
    for (_, name) in scored {
        if out.len() >= max {
            break;
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out.truncate(max);
    out
}

/// "did you mean `a`, `b` or `c`?"
pub(crate) fn did_you_mean_hint(close: &[&str]) -> Option<String> {
    let quoted: Vec<String> = close.iter().map(|c| format!("`{c}`")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

/// A short list of names for a hint: at most `max`, then "and N more".
pub(crate) fn list_names<'a>(names: impl IntoIterator<Item = &'a str>, max: usize) -> String {
    let mut all: Vec<&str> = names.into_iter().collect();
    all.sort_unstable();
    all.dedup();
    if all.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = all.iter().take(max).copied().collect();
    let mut text = shown.join(", ");
    if all.len() > max {
        text.push_str(&format!(" and {} more", all.len() - max));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_ranks_best_first() {
        let names = ["enriched_leads", "stg_leads", "churn_risk", "leads_to_crm"];
        assert_eq!(
            close_names("enriched_lead", names, 3),
            vec!["enriched_leads"]
        );
        let leads = close_names("leads", names, 3);
        assert!(leads.contains(&"stg_leads"), "{leads:?}");
        assert!(close_names("zzzzzzzzzz", names, 3).is_empty());
    }

    #[test]
    fn hint_lists_names() {
        assert_eq!(did_you_mean_hint(&[]), None);
        assert_eq!(
            did_you_mean_hint(&["a"]).as_deref(),
            Some("did you mean `a`?")
        );
        assert_eq!(
            did_you_mean_hint(&["a", "b", "c"]).as_deref(),
            Some("did you mean `a`, `b` or `c`?")
        );
        assert_eq!(list_names(["b", "a", "c"], 2), "a, b and 1 more");
    }
}

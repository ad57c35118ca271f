//! Reports and graphs for other tools: JSON lines, Graphviz DOT.

use super::*;
pub(super) fn json_field(out: &mut String, name: &str, value: &str) {
    json_string(out, name);
    out.push(':');
    json_string(out, value);
}

pub(super) fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// All reports as one text, separated by blank lines (what the panics show).
pub(crate) fn render_all(reports: &[Report]) -> String {
    let mut text = String::new();
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let _ = write!(text, "{report}");
    }
    text
}

/// The `(held, waited)` class labels of every dependency of `reports`.
pub(crate) fn cycle_pairs(reports: &[Report]) -> rustc_hash::FxHashSet<(String, String)> {
    reports
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                ReportKind::CircularDependency | ReportKind::RecursiveLocking
            )
        })
        .flat_map(|r| &r.dependencies)
        .map(|d| (d.held.to_string(), d.waited.to_string()))
        .collect()
}

/// A DOT digraph of `(from, to, in a cycle)` edges between class labels.
pub(crate) fn render_dot(edges: &[(String, String, bool)]) -> String {
    let quote = |label: &str| {
        label
            .trim_matches('`')
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    let mut dot = String::from("digraph async_lockdep {\n");
    for (from, to, in_cycle) in edges {
        dot.push_str(&format!("    \"{}\" -> \"{}\"", quote(from), quote(to)));
        if *in_cycle {
            dot.push_str(" [color=red]");
        }
        dot.push_str(";\n");
    }
    dot.push_str("}\n");
    dot
}

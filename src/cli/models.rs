//! `benchgen models list`.

use std::path::Path;

use benchgen::model::listing::{self, Listing};

use super::SourceArgs;

pub fn list(sources: &SourceArgs, json: bool) -> anyhow::Result<()> {
    let options = sources.options();
    let registry = options.registry()?;
    let hub_cache = &options.hub.cache_dir;
    let found = listing::list(&registry, listing::trained_dir(super::vars()), hub_cache)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&found)?)?;
    } else {
        out!("{}", render(&found, hub_cache))?;
    }
    Ok(())
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `hub_cache`: where the HuggingFace models were looked for.
fn render(l: &Listing, hub_cache: &Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let registry = l
        .registry
        .as_ref()
        .map_or_else(|| "no registry file".to_string(), |p| p.display().to_string());
    let _ = writeln!(out, "Platform Models ({registry})");
    if l.platform.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for m in &l.platform {
        let mut extra = Vec::new();
        if let Some(r) = &m.revision {
            extra.push(format!("revision {r}"));
        }
        if let Some(d) = &m.dtype {
            extra.push(d.clone());
        }
        if let Some(d) = &m.description {
            extra.push(d.clone());
        }
        let extra =
            if extra.is_empty() { String::new() } else { format!("  ({})", extra.join(", ")) };
        let _ = writeln!(out, "  platform:{:<20} → {}{extra}", m.alias, m.source);
    }
    let _ = writeln!(out, "\nRunning");
    if l.running.is_empty() {
        let _ = writeln!(out, "  (none; add a registry alias with source = \"running:URL\")");
    }
    for r in &l.running {
        let model = r.model.as_deref().map_or_else(String::new, |m| format!("  model {m}"));
        let _ = writeln!(out, "  platform:{:<20} {}{model}", r.alias, r.url);
    }
    let _ = writeln!(out, "\nTrained ({})", l.trained_dir.display());
    if l.trained.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for t in &l.trained {
        let base = t.base.as_deref().map_or_else(String::new, |b| format!(", base {b}"));
        let _ = writeln!(out, "  {:<40} {}{base}, {}", t.spec, t.kind, size(t.size_bytes));
    }
    let _ = writeln!(out, "\nHuggingFace ({})", hub_cache.display());
    if l.huggingface.is_empty() {
        let _ = writeln!(out, "  (none cached)");
    }
    for m in &l.huggingface {
        let revs: Vec<String> = m
            .revisions
            .iter()
            .map(|r| {
                let short = &r.commit[..r.commit.len().min(12)];
                if r.refs.is_empty() {
                    short.to_string()
                } else {
                    format!("{short} ({})", r.refs.join(", "))
                }
            })
            .collect();
        let _ = writeln!(out, "  {:<40} {}, {}", m.spec, size(m.size_bytes), revs.join("; "));
    }
    out
}

//! `--explain-context`: what the context sends and why, without building.

use context::{Context, Options, Report};
use serde_json::{Value, json};
use shared::{Document, Result, info, warn};

use crate::Cli;
use crate::request::object;

pub(crate) fn open_context(cli: &Cli) -> Result<Context> {
    let options = if cli.keep_mtimes {
        Options { mtime: None }
    } else {
        Options::default()
    };
    Context::open(&cli.context, cli.file.as_deref(), options)
}

pub(crate) fn explain(cli: &Cli, mut doc: Document) -> Result<Document> {
    let ctx = open_context(cli)?;
    let report = ctx.explain(10)?;
    print_report(&ctx, &report);
    for path in &cli.why {
        info!("{}", ctx.ignore().explain(path));
    }
    let mut build = object(&doc, "build");
    build.insert(
        "context".to_owned(),
        json!({
            "dir": ctx.root().display().to_string(),
            "dockerfile": ctx.dockerfile_name(),
            "entries": report.entries,
            "files": report.files,
            "bytes": report.bytes,
        }),
    );
    doc.set("build", Value::Object(build));
    Ok(doc)
}

pub(crate) fn print_report(ctx: &Context, report: &Report) {
    let dockerfile = match ctx.dockerfile() {
        context::Dockerfile::Inside(rel) => format!("Dockerfile {rel}"),
        context::Dockerfile::Outside { name, .. } => format!(
            "Dockerfile {} from outside the context, sent apart from it (in the classic builder's tar as {name})",
            ctx.dockerfile_shown()
        ),
    };
    info!(
        "context {}: {} files, {} in {} entries; {dockerfile}",
        ctx.root().display(),
        report.files,
        shared::show::bytes(report.bytes),
        report.entries,
    );
    if ctx.ignore().rules().is_empty() {
        info!("no .dockerignore rules: everything is sent");
    } else {
        info!("rules, in order (the last that matches wins):");
        for rule in ctx.ignore().rules() {
            info!("  {:<30} {}", rule.text, rule.location());
        }
    }
    info!("by directory:");
    for dir in &report.dirs {
        info!(
            "  {:>10}  {:>7} files  {}",
            shared::show::bytes(dir.bytes),
            dir.files,
            dir.dir
        );
    }
    info!("largest files:");
    for (name, size) in &report.largest {
        info!("  {:>10}  {name}", shared::show::bytes(*size));
    }
    for warning in &report.warnings {
        warn!("{warning}");
    }
}

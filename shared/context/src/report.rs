//! `--explain-context`: sizes, the largest files and directories, and warnings.

use std::collections::HashMap;

use shared::error::Result;

use crate::{Context, IGNORE_FILE, Kind};

impl Context {
    /// Sizes and warnings for `--explain-context`: the walk without reading contents.
    pub fn explain(&self, largest: usize) -> Result<Report> {
        let mut report = Report::default();
        let mut dirs: HashMap<String, (u64, u64)> = HashMap::new();
        self.walk(|entry| {
            // What the build sees: the tar's additions are read and dropped by the daemon.
            if !entry.role.in_session() {
                return Ok(());
            }
            report.entries += 1;
            let size = match entry.kind {
                Kind::File(n) => n,
                _ => 0,
            };
            if matches!(entry.kind, Kind::File(_)) {
                report.files += 1;
                report.bytes += size;
                let top = match entry.name.split_once('/') {
                    Some((first, _)) => format!("{first}/"),
                    None => "./".to_owned(),
                };
                let slot = dirs.entry(top).or_default();
                slot.0 += 1;
                slot.1 += size;
                report.largest.push((entry.name.clone(), size));
                if report.largest.len() > largest * 4 + 16 {
                    trim_largest(&mut report.largest, largest);
                }
            }
            for part in entry.name.split('/') {
                if (part == ".git" || part == "node_modules")
                    && !report.warnings.iter().any(|w| w.starts_with(part))
                {
                    report.warnings.push(format!(
                        "{part} is in the context (first at {}): add it to {IGNORE_FILE} unless the build needs it",
                        entry.name
                    ));
                }
            }
            Ok(())
        })?;
        trim_largest(&mut report.largest, largest);
        let mut dirs: Vec<DirSize> = dirs
            .into_iter()
            .map(|(dir, (files, bytes))| DirSize { dir, files, bytes })
            .collect();
        dirs.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.dir.cmp(&b.dir)));
        report.dirs = dirs;
        Ok(report)
    }
}

fn trim_largest(list: &mut Vec<(String, u64)>, keep: usize) {
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list.truncate(keep);
}

/// Files and bytes under one top-level directory of the context (`./` for the root's files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirSize {
    /// The directory, with a trailing `/`.
    pub dir: String,
    /// Regular files sent under it.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What `--explain-context` shows.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Entries sent.
    pub entries: u64,
    /// Regular files sent.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Sizes by top-level directory, largest first.
    pub dirs: Vec<DirSize>,
    /// The largest files, largest first.
    pub largest: Vec<(String, u64)>,
    /// Warnings (`.git` or `node_modules` sent).
    pub warnings: Vec<String>,
}

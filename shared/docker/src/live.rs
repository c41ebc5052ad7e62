//! The live display of a build or a push, for a person watching a terminal: a header with the
//! time spent, and one row per layer (a bar of bytes) or per build step (its name, then its
//! last output line, then how it ended), redrawn in place by indicatif.
//!
//! Only when stderr is a terminal that can redraw (not `TERM=dumb`) and messages are wanted
//! (no `-q`); a CI log gets the tools' throttled lines instead. While the display runs, every message of [`shared::log`] is
//! printed above its rows, so the two never tear each other. Text from outside (step names,
//! build output) has its control characters escaped before it is drawn.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use shared::log::{Level, escape_controls};

/// How often the display may redraw: often enough to look live, rarely enough to cost nothing.
const REDRAWS_PER_SECOND: u8 = 10;

/// A live display on stderr. Dropping it leaves its rows on the screen as last drawn and sends
/// messages to stderr again.
pub struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    rows: BTreeMap<String, ProgressBar>,
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this module: one that does not parse is a bug, shown as
    // plain text rather than a panic.
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn clean(text: &str) -> String {
    escape_controls(text).into_owned()
}

impl Live {
    /// Starts a display headed by `title`, if stderr is a terminal and `-q` was not given.
    #[must_use]
    pub fn start(title: &str) -> Option<Self> {
        if !shared::log::stderr_is_terminal() || !shared::log::enabled(Level::Info) {
            return None;
        }
        let multi =
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND));
        // A terminal that cannot move its cursor (TERM=dumb, or none) gets the plain lines.
        if multi.is_hidden() {
            return None;
        }
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(style("{spinner} {msg} {elapsed}"));
        header.set_message(clean(title));
        header.enable_steady_tick(Duration::from_millis(100));
        let printer = multi.clone();
        shared::log::redirect(Some(Box::new(move |line| {
            let _ = printer.println(line);
        })));
        Some(Self {
            multi,
            header,
            rows: BTreeMap::new(),
        })
    }

    /// Changes the header's text.
    pub fn title(&self, title: &str) {
        self.header.set_message(clean(title));
    }

    fn row(&mut self, key: &str, make: impl FnOnce() -> ProgressBar) -> &ProgressBar {
        let multi = &self.multi;
        self.rows
            .entry(key.to_owned())
            .or_insert_with(|| multi.add(make()))
    }

    /// Shows row `key` as a bar: `done` of `total` bytes, labelled.
    pub fn bytes(&mut self, key: &str, label: &str, done: u64, total: u64) {
        let bar = self.row(key, || {
            let bar = ProgressBar::new(total);
            bar.set_style(
                style("  {prefix:<24} [{bar:30}] {bytes:>10} / {total_bytes:<10}")
                    .progress_chars("=> "),
            );
            bar
        });
        bar.set_prefix(clean(label));
        bar.set_length(total);
        bar.set_position(done.min(total));
    }

    /// Shows row `key` as a line of text (a step running, with its last output line).
    pub fn text(&mut self, key: &str, text: &str) {
        let bar = self.row(key, || {
            let bar = ProgressBar::new_spinner();
            bar.set_style(style("  {wide_msg}"));
            bar
        });
        bar.set_message(clean(text));
    }

    /// Ends row `key` with its last text, which stays on the screen.
    pub fn done(&mut self, key: &str, text: &str) {
        let bar = self.row(key, ProgressBar::new_spinner).clone();
        bar.set_style(style("  {wide_msg}"));
        bar.finish_with_message(clean(text));
    }

    /// Ends every row that is still running, with `text` after its label (`pushed`).
    pub fn done_all(&mut self, text: &str) {
        for bar in self.rows.values().filter(|b| !b.is_finished()) {
            bar.set_style(style("  {prefix:<24} {wide_msg}"));
            bar.finish_with_message(clean(text));
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        for bar in self.rows.values().filter(|b| !b.is_finished()) {
            bar.abandon();
        }
        self.header.finish();
        shared::log::redirect(None);
    }
}

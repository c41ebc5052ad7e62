//! Child processes that must not outlive the tool, such as a private `ssh-agent` holding keys.
//!
//! A [`Killed`] child is killed and reaped when it is dropped. A panic does not drop it: the
//! panic hook ([`crate::cli`]) exits at once, so it kills every child still held here first.

use std::process::Child;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The children held, by the number of their [`Killed`].
static HELD: Mutex<Vec<(u64, Child)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A child process killed when this is dropped, or when the tool panics.
#[derive(Debug)]
pub struct Killed {
    id: u64,
    pid: u32,
}

impl Killed {
    /// Holds `child` until this is dropped.
    #[must_use]
    pub fn hold(child: Child) -> Self {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = child.id();
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, child));
        Self { id, pid }
    }

    /// The child's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let taken = {
            let mut held = HELD
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            held.iter()
                .position(|(id, _)| *id == self.id)
                .map(|at| held.swap_remove(at).1)
        };
        if let Some(mut child) = taken {
            end(&mut child);
        }
    }
}

/// Kills a child and reaps it.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills every child still held: for the panic hook, which exits without dropping anything.
/// It does not wait for a lock that the panicking thread might hold.
pub(crate) fn kill_all() {
    if let Ok(mut held) = HELD.try_lock() {
        for (_, child) in held.iter_mut() {
            end(child);
        }
    }
}

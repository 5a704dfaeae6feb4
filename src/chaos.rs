//! Fault points for the crash-safety tests (issue 20), in debug builds only.
//!
//! `PAVED_CHAOS=<file>` (read once at start, before Paved wipes its `PAVED_*` variables)
//! names a file a test writes point names into, one per line. The first time the process
//! reaches a point named there, it takes the name out of the file, says so on standard
//! error (`paved chaos: stopped at <point>`) and stops itself (`SIGSTOP`): the test then
//! kills it there with SIGKILL, exactly where a crash hurts most. The points:
//! - `note-push`: an audit note's commit is made in the mirror, not pushed yet;
//! - `result-write`: the script has ended, its result is not recorded yet;
//! - `deployment`: GitHub made the deployment, its id is not recorded yet.
//!
//! A release build has no such points: [`point`] is empty there.

#[cfg(debug_assertions)]
static FILE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

/// Reads `PAVED_CHAOS`; call before the environment is wiped.
pub fn arm_from_env() {
    #[cfg(debug_assertions)]
    {
        let file = std::env::var_os("PAVED_CHAOS")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        let _ = FILE.set(file);
    }
}

/// A fault point: stops the process here when the chaos file names `name`.
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    {
        static TAKE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let Some(Some(file)) = FILE.get() else { return };
        let hit = {
            let _one = TAKE.lock().unwrap_or_else(|p| p.into_inner());
            let Ok(armed) = std::fs::read_to_string(file) else {
                return;
            };
            let hit = armed.lines().any(|l| l.trim() == name);
            if hit {
                let rest: String = armed
                    .lines()
                    .filter(|l| l.trim() != name)
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = std::fs::write(file, rest);
            }
            hit
        };
        if hit {
            eprintln!("paved chaos: stopped at {name}");
            // Safety: raise(3) signals this process; no memory is involved.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

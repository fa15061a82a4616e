//! Stopping `livetalk run` from outside: Ctrl+C (SIGINT), SIGTERM (systemd, the OBS source that
//! started the engine) and SIGHUP (the terminal closed; left ignored under `nohup`). The first
//! one asks the command to stop cleanly: the engine, the sinks, the virtual microphone's
//! PulseAudio modules and the socket files all go, and it exits 0. A second one while it is
//! stopping exits at once, with 128 + the signal's number as a process killed by it would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::flag;

const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The stop request the signal handlers raise.
#[derive(Clone)]
pub struct StopSignals {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl StopSignals {
    /// Replaces the default action (die on the spot) of the stop signals.
    pub fn install() -> Result<Self> {
        let requested = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in STOP_SIGNALS {
            if sig == SIGHUP && ignored_at_start(sig) {
                continue;
            }
            // Registered first, the shutdown action sees the flag as it was before this signal:
            // set only when an earlier signal already asked to stop.
            flag::register_conditional_shutdown(sig, 128 + sig, requested.clone())
                .and_then(|_| flag::register_usize(sig, signal.clone(), sig as usize))
                .and_then(|_| flag::register(sig, requested.clone()))
                .with_context(|| format!("handling {}", signal_hook::low_level::signal_name(sig).unwrap_or("a stop signal")))?;
        }
        Ok(StopSignals { requested, signal })
    }

    /// The signal that asked to stop ("SIGINT", "SIGTERM", "SIGHUP"), if one came.
    pub fn received(&self) -> Option<&'static str> {
        if !self.requested.load(Ordering::SeqCst) {
            return None;
        }
        signal_hook::low_level::signal_name(self.signal.load(Ordering::SeqCst) as i32).or(Some("a stop signal"))
    }
}

/// Whether `sig` was ignored when the process started (`nohup` ignores SIGHUP), read from the
/// SigIgn mask of /proc/self/status.
fn ignored_at_start(sig: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).and_then(|m| u64::from_str_radix(m.trim(), 16).ok());
    mask.is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

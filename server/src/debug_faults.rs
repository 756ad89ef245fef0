//! Deliberate bugs for proving that the nemesis checkers catch real ones,
//! and the peer-link redirection the nemesis uses to put a proxy it
//! controls on every link between two members.
//!
//! Both are read once from the environment, and only in builds with
//! `debug_assertions`: in a release build every function here is a
//! constant and the optimiser removes the code behind it, so no setting can
//! make a shipped binary misbehave.
//!
//! - `SETT_DEBUG_FAULTS`: a comma-separated list of [`Fault`] names.
//! - `SETT_DEBUG_DIAL_MAP`: comma-separated `from=to` URL pairs. When this
//!   member opens a connection to another member's peer or client URL
//!   `from`, it dials `to` instead (the URL itself stays what the
//!   membership says, so member ids and forwarded requests are unchanged).

/// A deliberate bug, named as in `SETT_DEBUG_FAULTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `ack-uncommitted`: every fourth Put is answered as a success but
    /// never proposed, so the acknowledged write never commits.
    AckUncommitted,
    /// `local-read`: linearizable reads skip the ReadIndex round and read
    /// this member's applied state, however stale.
    LocalRead,
    /// `drop-watch-event`: a watch stream silently skips every event of
    /// each revision divisible by 16.
    DropWatchEvent,
    /// `skip-txn-compare`: every Txn takes its success branch, whatever
    /// its compares say.
    SkipTxnCompare,
}

impl Fault {
    /// Every fault, with its name.
    pub const ALL: [(Fault, &'static str); 4] = [
        (Fault::AckUncommitted, "ack-uncommitted"),
        (Fault::LocalRead, "local-read"),
        (Fault::DropWatchEvent, "drop-watch-event"),
        (Fault::SkipTxnCompare, "skip-txn-compare"),
    ];

    /// The name used in `SETT_DEBUG_FAULTS`.
    pub fn name(self) -> &'static str {
        Fault::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }
}

#[cfg(debug_assertions)]
mod imp {
    use super::Fault;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    struct Settings {
        faults: Vec<Fault>,
        dial: HashMap<String, String>,
    }

    fn settings() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(|| {
            let list = |name: &str| {
                std::env::var(name)
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<String>>()
            };
            let mut faults = Vec::new();
            for name in list("SETT_DEBUG_FAULTS") {
                match Fault::ALL.iter().find(|(_, n)| *n == name) {
                    Some((f, _)) => {
                        tracing::warn!("debug fault {name} is switched on");
                        faults.push(*f);
                    }
                    None => tracing::warn!("unknown debug fault {name:?} ignored"),
                }
            }
            let dial = list("SETT_DEBUG_DIAL_MAP")
                .into_iter()
                .filter_map(|pair| {
                    let (from, to) = pair.split_once('=')?;
                    Some((from.to_owned(), to.to_owned()))
                })
                .collect();
            Settings { faults, dial }
        })
    }

    pub fn enabled(fault: Fault) -> bool {
        settings().faults.contains(&fault)
    }

    pub fn dial_url(url: &str) -> String {
        settings()
            .dial
            .get(url)
            .cloned()
            .unwrap_or_else(|| url.to_owned())
    }

    pub fn skip_this_put() -> bool {
        static PUTS: AtomicU64 = AtomicU64::new(0);
        enabled(Fault::AckUncommitted) && PUTS.fetch_add(1, Ordering::Relaxed) % 4 == 3
    }
}

#[cfg(not(debug_assertions))]
mod imp {
    use super::Fault;

    pub fn enabled(_: Fault) -> bool {
        false
    }

    pub fn dial_url(url: &str) -> String {
        url.to_owned()
    }

    pub fn skip_this_put() -> bool {
        false
    }
}

/// Whether `fault` is switched on (never in a release build).
pub fn enabled(fault: Fault) -> bool {
    imp::enabled(fault)
}

/// The address to dial for another member's `url`.
pub fn dial_url(url: &str) -> String {
    imp::dial_url(url)
}

/// With [`Fault::AckUncommitted`], true for every fourth Put.
pub fn skip_this_put() -> bool {
    imp::skip_this_put()
}

//! Exit codes: etcdctl's, for the errors etcdctl gives them to, so scripts
//! written for etcdctl see the same status. Every other error exits 1;
//! clap's usage errors exit 2.

use std::fmt;

/// Bad input in a transaction read from standard input.
pub const INVALID_INPUT: u8 = 3;
/// An output format the command does not offer.
pub const BAD_FEATURE: u8 = 4;
/// A watch the server canceled.
pub const INTERRUPTED: u8 = 5;
/// A bad argument (an ID that is not hexadecimal, conflicting flags).
pub const BAD_ARGS: u8 = 128;

/// An error that carries the exit code to leave with.
#[derive(Debug)]
pub struct Coded {
    /// The process exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

/// An error exiting with `code`.
pub fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
    })
}

/// The exit code for `err`: its own if it carries one, else 1.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Coded>().map_or(1, |c| c.code)
}

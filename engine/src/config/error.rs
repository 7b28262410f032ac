//! Configuration errors, each carrying the place in the source that caused it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a configuration file: the file (the included file where the text came from an
/// `include`), and the 1-based line and column (columns count characters, not bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: u32,
    pub col: u32,
}

impl Loc {
    /// The file this position belongs to.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Why a configuration could not be read. `Display` gives the contract of `cohortd --check-config`:
/// `FILE:LINE:COL: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{loc}: {message}")]
pub struct ConfigError {
    pub loc: Loc,
    pub message: String,
}

impl ConfigError {
    pub fn new(loc: &Loc, message: impl Into<String>) -> Self {
        ConfigError {
            loc: loc.clone(),
            message: message.into(),
        }
    }
}

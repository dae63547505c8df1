//! Errors of the engine. Every message says what, where and (in `hint`) how to fix it.

use std::fmt;

/// A configuration problem: nothing is sent anywhere, exit code 2.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A warehouse could not be reached or a query failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WarehouseError {
    pub message: String,
}

impl WarehouseError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A destination failed as a whole (not a per-row reject).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DestinationError {
    pub message: String,
}

impl DestinationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The state store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Locked(String),
    /// The warehouse state store: a statement failed (the message names the schema).
    #[error("{0}")]
    Warehouse(String),
    #[error("state at {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("state at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

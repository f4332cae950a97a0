//! What goes wrong when a policy is loaded: every problem, with its place.

use std::fmt;

/// One problem found in a policy, with where it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyIssue {
    /// Dotted path to the offending entry, e.g. `fairness.dimensions[1].groups`.
    pub place: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// A policy that could not be loaded, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy is invalid ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PolicyIssue>),
}

impl PolicyError {
    /// The individual problems (empty for I/O errors).
    pub fn issues(&self) -> &[PolicyIssue] {
        match self {
            PolicyError::Io { .. } => &[],
            PolicyError::Invalid(v) => v,
        }
    }
}

//! Errors of the `models` crate. Variants carry the thing at fault as data.

use thiserror::Error;

/// A malformed architecture string or one that does not fit a space.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArchError {
    /// The string has the wrong number of digits.
    #[error(
        "arch {arch:?} has {found} digits; space {space:?} has {expected} choice blocks, so write {expected} digits"
    )]
    Length {
        /// The arch as given.
        arch: String,
        /// Its length.
        found: usize,
        /// Number of choice blocks in the space.
        expected: usize,
        /// The space it was checked against ("" when no space was known).
        space: String,
    },
    /// A character is not an allowed choice digit.
    #[error(
        "arch {arch:?}: position {position} (0-based) is {found:?}; allowed digits are 0..={max}{allowed}"
    )]
    Digit {
        /// The arch as given.
        arch: String,
        /// 0-based position of the bad character.
        position: usize,
        /// The character found.
        found: char,
        /// Largest allowed digit.
        max: u8,
        /// What the digits mean at that position (`" (block 3 of space …: 0=k3e3, …)"`), or ""
        /// when no space was known.
        allowed: String,
    },
    /// The string is empty.
    #[error("empty arch: write one digit per choice block, e.g. 21012020202300003233")]
    Empty,
}

/// Any error of the `models` crate.
#[derive(Debug, Error)]
pub enum Error {
    /// A bad architecture.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// A space name that is not a preset.
    #[error("unknown space {name:?}; known presets: {known}")]
    UnknownSpace {
        /// The name given.
        name: String,
        /// Comma-separated preset names.
        known: String,
    },
    /// A space whose numbers cannot build a network.
    #[error("space {space:?} is invalid: {reason}")]
    InvalidSpace {
        /// The space's name.
        space: String,
        /// What is wrong, and what to change.
        reason: String,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint that cannot be used (wrong space, version or content).
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file at fault.
        path: std::path::PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// Input tensors or arguments that do not fit the network (the message says what was expected).
    #[error("{0}")]
    BadInput(String),
    /// A named tensor a subnet needs is not in the given weights.
    #[error(
        "tensor {name:?} is missing (needed by {part}); the weights must come from a supernet or subnet of the same space, or export with random weights"
    )]
    MissingTensor {
        /// The parameter name, e.g. `blocks.7.choice1.main.conv1.weight`.
        name: String,
        /// The part of the network that needs it, e.g. `block 7 (k5, stride 2)`.
        part: String,
    },
    /// A named tensor has the wrong shape or unusable values.
    #[error("tensor {name:?} ({part}): {reason}")]
    InvalidTensor {
        /// The parameter name.
        name: String,
        /// The part of the network that uses it.
        part: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

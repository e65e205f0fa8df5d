//! The one error type of this crate: every variant says which input, field or board is at fault.

/// Errors from statistics, fitting and predictor files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two series that must pair up element by element have different lengths.
    #[error("length mismatch: {left} has {left_len} values but {right} has {right_len}")]
    LengthMismatch {
        /// Name of the first series.
        left: &'static str,
        /// Its length.
        left_len: usize,
        /// Name of the second series.
        right: &'static str,
        /// Its length.
        right_len: usize,
    },
    /// A statistic needs more values than it was given.
    #[error("{what} needs at least {need} values, got {got}")]
    TooFew {
        /// The statistic or step that failed.
        what: &'static str,
        /// The minimum it needs.
        need: usize,
        /// What it got.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("{series}[{index}] is {value}, expected a finite number")]
    NonFinite {
        /// Name of the series.
        series: &'static str,
        /// Position of the bad value.
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// A relative error was asked for against a zero measurement.
    #[error(
        "measured[{index}] is 0, so the relative error ({what}) is undefined; drop that sample or use RMSE"
    )]
    ZeroMeasurement {
        /// The statistic that divides by the measurement.
        what: &'static str,
        /// Position of the zero.
        index: usize,
    },
    /// A correlation is undefined because one series is constant.
    #[error("{what} is undefined: {series} is constant")]
    Constant {
        /// The statistic.
        what: &'static str,
        /// The series without variation.
        series: &'static str,
    },
    /// The arch description is inconsistent or does not match the predictor.
    #[error("arch features: {0}")]
    Features(String),
    /// A linear system could not be solved.
    #[error("linear solve failed: {0}")]
    Solve(String),
    /// Bad fit options.
    #[error("fit options: {0}")]
    Options(String),
    /// The predictor file was calibrated on another board.
    #[error(
        "predictor was calibrated on board `{file}` but is being used for board `{given}`; \
         recalibrate on this board (`shiftnas calibrate`) or force the mismatch"
    )]
    BoardMismatch {
        /// Fingerprint stored in the file.
        file: String,
        /// Fingerprint of the board at hand.
        given: String,
    },
    /// A predictor file field is missing, has the wrong type or an invalid value.
    #[error("predictor file: field `{field}`: {reason}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A predictor file is not valid JSON or not an object.
    #[error("predictor file: {0}")]
    Parse(String),
    /// Too few values for a distribution-free confidence interval of a median.
    #[error(
        "a {pct} % distribution-free interval of a median needs at least {need} {what}, got \
         {got}; measure more or lower the confidence",
        pct = 100.0 * confidence
    )]
    TooFewForInterval {
        /// What is counted (`rounds`, `values`).
        what: &'static str,
        /// The confidence asked for, in (0, 1).
        confidence: f64,
        /// The smallest count that reaches it.
        need: usize,
        /// The count given.
        got: usize,
    },
    /// A setting of the measurement protocol is out of range.
    #[error("{setting} = {value}: {expected}")]
    Setting {
        /// The setting (`confidence`, `precision`, `min_rounds`, …).
        setting: &'static str,
        /// The value given.
        value: f64,
        /// What it must be.
        expected: &'static str,
    },
    /// A timed run or a round of an interleaved measurement is unusable.
    #[error("{place}: {problem}")]
    Sample {
        /// Where: round, model (index in the set, 0-based) and run.
        place: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

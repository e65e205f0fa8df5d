//! Flag groups that several commands flatten in (`#[command(flatten)]`), and the value parsers
//! that refuse bad numbers at parse time, naming the flag, before any command writes anything.
//!
//! Each group's `Default` is the one place its defaults are written: the clap attributes take
//! them from it, and `quickstart` builds its arg structs from it.

use clap::Args;
use shiftnas_models::Space;

use crate::cli::train::AugmentChoice;
use crate::data::DataSpec;

/// The data flags of `train`, `retrain` and `search`: which images, how they are fitted to the
/// space, and how many are held out as the proxy split.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// Images: builtin:fashion-mnist | idx:DIR | cifar10:DIR | cifar100:DIR | folder:DIR.
    #[arg(long, default_value_t = DataArgs::default().data)]
    pub data: DataSpec,
    /// Training images held out as the proxy split (scored by search, never trained on)
    /// [default: 1000, or 10 % if smaller; retrain with --supernet-run: that run's].
    #[arg(long, value_name = "N")]
    pub proxy_size: Option<usize>,
    /// Convert grayscale <-> RGB when the data and the space disagree.
    #[arg(long)]
    pub convert_channels: bool,
    /// Resize images to the space's input size when they differ.
    #[arg(long)]
    pub resize: bool,
}

impl Default for DataArgs {
    fn default() -> Self {
        DataArgs {
            data: DataSpec::BuiltinFashionMnist,
            proxy_size: None,
            convert_channels: false,
            resize: false,
        }
    }
}

impl DataArgs {
    /// `--convert-channels` and `--resize` as the data loader takes them.
    pub fn conform(&self) -> crate::data::ConformOptions {
        crate::data::ConformOptions {
            convert_channels: self.convert_channels,
            resize: self.resize,
        }
    }
}

/// The optimiser and training-loop flags of `train` and `retrain` (SGD with momentum, the
/// learning rate decayed linearly to 0).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Training")]
pub struct TrainingArgs {
    /// Optimizer steps.
    #[arg(long, default_value_t = TrainingArgs::default().steps, value_parser = at_least_one_u64)]
    pub steps: u64,
    /// Images per batch.
    #[arg(long, default_value_t = TrainingArgs::default().batch, value_parser = at_least_one)]
    pub batch: usize,
    /// Initial learning rate, decayed linearly to 0 [default: SPOS's 0.5 at batch 1024, scaled
    /// linearly to --batch].
    #[arg(long, allow_hyphen_values = true, value_parser = positive)]
    pub lr: Option<f64>,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = TrainingArgs::default().momentum, allow_hyphen_values = true, value_parser = fraction)]
    pub momentum: f64,
    /// Weight decay on conv/linear weights (never on BN γ/β).
    #[arg(long, default_value_t = TrainingArgs::default().weight_decay, allow_hyphen_values = true, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy, in [0, 1).
    #[arg(long, default_value_t = TrainingArgs::default().label_smoothing, allow_hyphen_values = true, value_parser = fraction)]
    pub label_smoothing: f64,
    /// Training augmentation.
    #[arg(long, value_enum, default_value_t = TrainingArgs::default().augment)]
    pub augment: AugmentChoice,
    /// Steps between checkpoints (the last step always checkpoints).
    #[arg(long, default_value_t = TrainingArgs::default().checkpoint_every, value_parser = at_least_one_u64)]
    pub checkpoint_every: u64,
    /// Steps between log lines (log.jsonl, progress).
    #[arg(long, default_value_t = TrainingArgs::default().log_every, value_parser = at_least_one_u64)]
    pub log_every: u64,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        TrainingArgs {
            steps: 2000,
            batch: 64,
            lr: None,
            momentum: 0.9,
            weight_decay: 4e-5,
            label_smoothing: 0.1,
            augment: AugmentChoice::Auto,
            checkpoint_every: 500,
            log_every: 10,
        }
    }
}

/// `--space`: the name of a preset (an unknown one is refused, listing the known ones).
///
/// # Errors
/// An unknown name.
pub fn space_name(s: &str) -> Result<String, String> {
    Space::by_name(s).map(|_| s.to_string()).map_err(|_| {
        format!(
            "no such search-space preset; known: {} (see `shiftnas space show`), each scalable \
             with @w<mult> for width and @d<mult> for depth, e.g. spos-cifar@d1.5",
            Space::preset_names().join(", ")
        )
    })
}

fn number(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|e| format!("not a number ({e})"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err("must be a finite number".into())
    }
}

/// A finite number > 0 (learning rates, caps, budgets).
///
/// # Errors
/// Not a number, not finite, or ≤ 0.
pub fn positive(s: &str) -> Result<f64, String> {
    match number(s)? {
        x if x > 0.0 => Ok(x),
        _ => Err("must be a finite number > 0".into()),
    }
}

/// A finite number ≥ 0 (weight decay, margins).
///
/// # Errors
/// Not a number, not finite, or < 0.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match number(s)? {
        x if x >= 0.0 => Ok(x),
        _ => Err("must be a finite number ≥ 0".into()),
    }
}

/// A number in [0, 1) (momentum, label smoothing).
///
/// # Errors
/// Not a number, or outside [0, 1).
pub fn fraction(s: &str) -> Result<f64, String> {
    match number(s)? {
        x if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err("must be a number in [0, 1)".into()),
    }
}

/// A count ≥ 1 (batch sizes, population).
///
/// # Errors
/// Not a whole number, or 0.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// A count ≥ 2 (a population).
///
/// # Errors
/// Not a whole number, or < 2.
pub fn at_least_two(s: &str) -> Result<usize, String> {
    match at_least_one(s)? {
        1 => Err("must be at least 2".into()),
        n => Ok(n),
    }
}

/// A step count ≥ 1.
///
/// # Errors
/// Not a whole number, or 0.
pub fn at_least_one_u64(s: &str) -> Result<u64, String> {
    at_least_one(s).map(|n| n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(no_binary_name = true)]
    struct Both {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        training: TrainingArgs,
    }

    fn parse(args: &[&str]) -> Result<Both, String> {
        Both::try_parse_from(args).map_err(|e| e.to_string())
    }

    /// What clap fills in is exactly `Default` (one source of defaults).
    #[test]
    fn clap_defaults_are_the_default_impls() {
        let b = parse(&[]).unwrap();
        assert_eq!(
            format!("{:?}", b.data),
            format!("{:?}", DataArgs::default())
        );
        assert_eq!(
            format!("{:?}", b.training),
            format!("{:?}", TrainingArgs::default())
        );
    }

    /// Bad numbers fail at parse time with an error that names the flag.
    #[test]
    fn bad_numbers_name_their_flag() {
        for (flag, value) in [
            ("--lr", "-1"),
            ("--lr", "0"),
            ("--lr", "nan"),
            ("--lr", "inf"),
            ("--batch", "0"),
            ("--steps", "0"),
            ("--momentum", "1"),
            ("--momentum", "-0.1"),
            ("--weight-decay", "-1e-5"),
            ("--label-smoothing", "1.5"),
            ("--checkpoint-every", "0"),
            ("--log-every", "0"),
        ] {
            let e = parse(&[&format!("{flag}={value}")]).unwrap_err();
            assert!(e.contains(flag), "{flag}={value}: {e}");
            let e = parse(&[flag, value]).unwrap_err();
            assert!(e.contains(flag), "{flag} {value}: {e}");
        }
        let b = parse(&["--lr", "0.1", "--momentum", "0", "--weight-decay", "0"]).unwrap();
        assert_eq!(
            (b.training.lr, b.training.momentum, b.training.weight_decay),
            (Some(0.1), 0.0, 0.0)
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(positive("1e-4"), Ok(1e-4));
        assert!(positive("-0").is_err() && positive("x").is_err());
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("-inf").is_err());
        assert_eq!(fraction("0.99"), Ok(0.99));
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("-1").is_err() && at_least_one("0").is_err());
        assert_eq!(space_name("tiny"), Ok("tiny".into()));
        let e = space_name("nope").unwrap_err();
        assert!(e.contains("spos-imagenet") && e.contains("tiny"), "{e}");
    }
}

//! `shiftnas space show|flops`.

use anyhow::{Result, bail};
use shiftnas_models::Space;

use super::{Context, ExitStatus};
use crate::cli::space::{SpaceArgs, SpaceCommand};
use crate::output::render_table;

/// Runs `shiftnas space`.
pub fn run(args: SpaceArgs, ctx: &Context) -> Result<ExitStatus> {
    match args.command {
        SpaceCommand::Show { name } => {
            let spaces = match name {
                Some(n) => vec![Space::by_name(&n)?],
                None => Space::presets(),
            };
            if ctx.printer.json {
                ctx.printer.json(&spaces)?;
            } else {
                for s in &spaces {
                    print!("{}", describe(s));
                }
            }
            Ok(ExitStatus::Success)
        }
        SpaceCommand::Flops { .. } => {
            bail!("`shiftnas space flops` is not implemented in this build yet")
        }
    }
}

/// A human description of a space: its settings and a table of its blocks.
pub fn describe(s: &Space) -> String {
    let choices: Vec<String> = s
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i}={}", c.short_name()))
        .collect();
    let mut out = format!(
        "space {}\n  input {}×{}×{}, stem {}×{} s{} → {}, last conv {}, {} classes, width ×{}, dropout {}\n  choices {}\n\n",
        s.name,
        s.input_size,
        s.input_size,
        s.input_channels,
        s.stem.kernel,
        s.stem.kernel,
        s.stem.stride,
        s.stem_channels(),
        s.last_channels,
        s.classes,
        s.width_mult,
        s.dropout,
        choices.join(" "),
    );
    let rows: Vec<Vec<String>> = s
        .blocks()
        .iter()
        .map(|b| {
            vec![
                b.index.to_string(),
                b.stage.to_string(),
                b.in_channels.to_string(),
                b.out_channels.to_string(),
                b.stride.to_string(),
                format!("{}→{}", b.in_size, b.out_size),
            ]
        })
        .collect();
    out += &render_table(&["block", "stage", "in", "out", "stride", "size"], &rows);
    out.push('\n');
    out
}

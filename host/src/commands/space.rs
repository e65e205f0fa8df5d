//! `shiftnas space show|flops`.

use anyhow::{Context as _, Result};
use shiftnas_models::Space;
use shiftnas_models::cost::{self, ArchCost, Cost};

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
        SpaceCommand::Flops { space, arch } => {
            let s = Space::by_name(&space).with_context(|| format!("--space {space}"))?;
            let a = s
                .parse_arch(&arch)
                .with_context(|| format!("--arch for space {}", s.name))?;
            let costs = cost::arch_breakdown(&s, &a);
            if ctx.printer.json {
                ctx.printer.json(&costs)?;
            } else {
                print!("{}", describe_cost(&costs));
            }
            Ok(ExitStatus::Success)
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

/// A table of an arch's cost per part (stem, blocks, last conv, classifier) and its total.
pub fn describe_cost(c: &ArchCost) -> String {
    let fixed = |name: &str, cost: &Cost| {
        vec![
            name.to_string(),
            String::new(),
            String::new(),
            String::new(),
            cost.flops.to_string(),
            cost.params.to_string(),
        ]
    };
    let mut rows = vec![fixed("stem", &c.stem)];
    rows.extend(c.blocks.iter().map(|b| {
        vec![
            format!("block {}", b.index),
            b.choice.short_name().to_string(),
            b.stride.to_string(),
            format!("{}→{}", b.in_channels, b.out_channels),
            b.flops.to_string(),
            b.params.to_string(),
        ]
    }));
    rows.push(fixed("last conv", &c.last));
    rows.push(fixed("classifier", &c.classifier));
    rows.push(fixed("total", &c.total));
    let mut out = format!(
        "arch {} in space {}: {:.2} MFLOPs (multiply-adds), {:.3} M params (standalone, affine BN)\n\n",
        c.arch,
        c.space,
        c.total.flops as f64 / 1e6,
        c.total.params as f64 / 1e6,
    );
    out += &render_table(
        &["part", "choice", "stride", "channels", "flops", "params"],
        &rows,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_table_has_every_block_and_the_total() {
        let s = Space::spos_imagenet();
        let a = s.parse_arch("21012020202300003233").unwrap();
        let t = describe_cost(&cost::arch_breakdown(&s, &a));
        assert!(t.contains("322918720"), "{t}");
        assert!(t.contains("block 19"), "{t}");
        assert!(t.contains("322.92 MFLOPs"), "{t}");
    }
}

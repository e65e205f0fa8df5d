//! The inputs of `shiftnas rank`: supernet scores and retrained accuracies, read and checked.
//!
//! Supernet scores come from a search run's `archive.jsonl` ([`scores_from_archive`]; the score
//! is the supernet's top-1 error, lower is better, and an arch scored several times keeps its
//! latest record) or a CSV ([`scores_from_csv`]); retrained accuracies from a CSV with columns
//! `arch` and `accuracy` ([`read_truth`]). File errors name the file, line and column at fault.
//! [`pair`] lines both up by arch; the order-preserving figures themselves (global and local
//! order preservation, Kendall τ-b, Spearman ρ) are [`shiftnas_calibration::ranking`]'s.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use shiftnas_models::{Arch, Space};

use crate::archive;

/// Checks arch strings: against a space when one is known, else digits of one common length.
#[derive(Debug, Clone)]
pub struct ArchCheck {
    space: Option<Space>,
    first: Option<(usize, String)>,
}

impl ArchCheck {
    /// A checker for `space` (`None`: digits only, every arch as long as the first one seen).
    pub fn new(space: Option<Space>) -> ArchCheck {
        ArchCheck { space, first: None }
    }

    /// The space archs are checked against, if any.
    pub fn space(&self) -> Option<&Space> {
        self.space.as_ref()
    }

    /// Parses `s`; `at` says where it was read (e.g. `a.csv line 3, column 1`) for errors.
    ///
    /// # Errors
    /// Not digits, not valid in the space, or (without a space) a length unlike the first arch's.
    pub fn parse(&mut self, s: &str, at: &str) -> Result<Arch> {
        let arch = match &self.space {
            Some(space) => space.parse_arch(s).with_context(|| at.to_string())?,
            None => s.parse::<Arch>().with_context(|| at.to_string())?,
        };
        self.check_len(&arch, at)?;
        Ok(arch)
    }

    fn check_len(&mut self, arch: &Arch, at: &str) -> Result<()> {
        match &self.first {
            None => self.first = Some((arch.len(), at.to_string())),
            Some((len, first_at)) if *len != arch.len() => bail!(
                "{at}: arch {arch} has {} digits but the arch at {first_at} has {len}; \
                 all archs must come from one search space (pass --space NAME to check them)",
                arch.len()
            ),
            Some(_) => {}
        }
        Ok(())
    }
}

/// One value per arch, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchValues {
    /// `(arch, value)` pairs, each arch once.
    pub entries: Vec<(Arch, f64)>,
}

/// The supernet's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SupernetScores {
    /// Raw values as read (error or accuracy, see `higher_is_better`).
    pub values: ArchValues,
    /// Name of the score column (`error` or `accuracy`).
    pub column: String,
    /// Whether a higher value means a better arch.
    pub higher_is_better: bool,
    /// Archs that had more than one record (the latest was kept).
    pub rescored: usize,
    /// Distinct supernet training steps the scores were measured at (archive only).
    pub steps: BTreeSet<u64>,
}

impl SupernetScores {
    /// The value turned so that higher is better.
    pub fn goodness(&self, value: f64) -> f64 {
        if self.higher_is_better { value } else { -value }
    }
}

/// Reads a search run's `archive.jsonl`: each arch's latest supernet error.
///
/// # Errors
/// A missing or broken archive (file and line), an arch invalid for the space.
pub fn scores_from_archive(path: &Path, check: &mut ArchCheck) -> Result<SupernetScores> {
    let records = archive::read(path)?;
    let mut pos: HashMap<Arch, usize> = HashMap::new();
    let mut entries: Vec<(Arch, f64)> = Vec::new();
    let mut rescored = BTreeSet::new();
    let mut steps = BTreeSet::new();
    for (i, r) in records.into_iter().enumerate() {
        let at = format!("{} record {} (arch {})", path.display(), i + 1, r.arch);
        check.parse(&r.arch.to_string(), &at)?;
        if !r.error.is_finite() {
            bail!("{at}: error is {}, expected a number", r.error);
        }
        steps.insert(r.supernet_step);
        match pos.get(&r.arch) {
            Some(&j) => {
                entries[j].1 = r.error;
                rescored.insert(r.arch);
            }
            None => {
                pos.insert(r.arch.clone(), entries.len());
                entries.push((r.arch, r.error));
            }
        }
    }
    if entries.is_empty() {
        bail!(
            "{} holds no records; let the search run a generation first",
            path.display()
        );
    }
    Ok(SupernetScores {
        values: ArchValues { entries },
        column: "error".into(),
        higher_is_better: false,
        rescored: rescored.len(),
        steps,
    })
}

/// A text table: a header (if any) and rows of fields with their 1-based line numbers.
struct Table {
    header: Option<(usize, Vec<String>)>,
    rows: Vec<(usize, Vec<String>)>,
}

/// Splits `path` into fields: on commas if the first line has one, else on whitespace. Blank
/// lines and lines starting with `#` are skipped; the first line is a header when a field is
/// `arch`.
fn read_table(path: &Path) -> Result<Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = (text.trim_start_matches('\u{feff}').lines())
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let comma = lines.peek().is_some_and(|(_, l)| l.contains(','));
    let split = |l: &str| -> Vec<String> {
        let fields: Vec<&str> = if comma {
            l.split(',').collect()
        } else {
            l.split_whitespace().collect()
        };
        fields
            .into_iter()
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let mut rows: Vec<(usize, Vec<String>)> = lines.map(|(n, l)| (n, split(l))).collect();
    let header = match rows.first() {
        Some((_, f)) if f.iter().any(|f| f.eq_ignore_ascii_case("arch")) => {
            let (line, fields) = rows.remove(0);
            Some((line, fields.iter().map(|f| f.to_lowercase()).collect()))
        }
        _ => None,
    };
    Ok(Table { header, rows })
}

/// Position of column `name` in the header (on `line`), or an error naming the file and what was
/// found.
fn column(
    path: &Path,
    (line, header): &(usize, Vec<String>),
    name: &str,
    need: &str,
) -> Result<usize> {
    header.iter().position(|h| h == name).with_context(|| {
        format!(
            "{} line {line}: no `{name}` column (found: {}); {need}",
            path.display(),
            header.join(", ")
        )
    })
}

/// Reads `(arch, number)` rows from `table`'s columns `ac` and `vc`, rejecting an arch listed
/// twice with different values and a number `valid` refuses (it says what is allowed). Also
/// returns the line each entry was read from.
fn read_pairs(
    path: &Path,
    table: &Table,
    (ac, vc): (usize, usize),
    value_name: &str,
    valid: impl Fn(f64) -> Result<(), String>,
    check: &mut ArchCheck,
) -> Result<(ArchValues, Vec<usize>)> {
    let mut seen: HashMap<Arch, (f64, usize)> = HashMap::new();
    let (mut entries, mut lines) = (Vec::new(), Vec::new());
    for (line, fields) in &table.rows {
        let at = |c: usize| format!("{} line {line}, column {}", path.display(), c + 1);
        let (Some(a), Some(v)) = (fields.get(ac), fields.get(vc)) else {
            bail!(
                "{}: the line has only {} field(s), but the arch and {value_name} are in columns {} and {}",
                at(fields.len().min(ac.max(vc))),
                fields.len(),
                ac + 1,
                vc + 1
            );
        };
        let arch = check.parse(a, &at(ac))?;
        let value: f64 = v
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
            .with_context(|| format!("{}: {value_name} {v:?} is not a number", at(vc)))?;
        if let Err(why) = valid(value) {
            bail!("{}: {value_name} {value} {why}", at(vc));
        }
        match seen.get(&arch) {
            Some(&(old, old_line)) if old != value => bail!(
                "{}: arch {arch} has {value_name} {value} here but {old} on line {old_line}; \
                 keep one row per arch (average repeated runs first)",
                at(vc)
            ),
            Some(_) => {}
            None => {
                seen.insert(arch.clone(), (value, *line));
                entries.push((arch, value));
                lines.push(*line);
            }
        }
    }
    if entries.is_empty() {
        bail!("{} has no data rows", path.display());
    }
    Ok((ArchValues { entries }, lines))
}

/// Reads supernet scores from a CSV: a header naming `arch` and `error` (lower is better, e.g.
/// a search's `pareto.csv`) or `accuracy` (higher is better), or no header and `ARCH,ERROR` (or
/// `ARCH ERROR`) per line.
///
/// # Errors
/// An unreadable file, a missing column, a bad arch or number, a duplicate arch with two values.
pub fn scores_from_csv(path: &Path, check: &mut ArchCheck) -> Result<SupernetScores> {
    let table = read_table(path)?;
    let (cols, column, higher) = match &table.header {
        None => ((0, 1), "error".to_string(), false),
        Some(h) => {
            let need = "name the supernet score `error` (lower is better) or `accuracy` (higher is better)";
            let ac = column(path, h, "arch", need)?;
            let (vc, name, higher) = match h.1.iter().position(|c| c == "error") {
                Some(vc) => (vc, "error", false),
                None => (column(path, h, "accuracy", need)?, "accuracy", true),
            };
            ((ac, vc), name.to_string(), higher)
        }
    };
    let name = format!("supernet {column}");
    let (values, _) = read_pairs(path, &table, cols, &name, |_| Ok(()), check)?;
    Ok(SupernetScores {
        values,
        column,
        higher_is_better: higher,
        rescored: 0,
        steps: BTreeSet::new(),
    })
}

/// Retrained accuracies, as fractions in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// `(arch, accuracy)` with accuracy in [0, 1].
    pub values: ArchValues,
    /// Whether the file gave percentages (some value above 1); they were divided by 100.
    pub percent: bool,
}

/// Reads retrained accuracies: a CSV whose header names `arch` and `accuracy`, in % (when any
/// value exceeds 1) or as fractions; other columns are ignored.
///
/// One file takes one unit: in a file in % (some value above 1) a value in (0, 1] could be a
/// fraction or a sub-1 % accuracy, so it is refused rather than guessed (0 is 0 in both units).
///
/// # Errors
/// An unreadable file, no header or a missing column, a bad arch or number, an accuracy outside
/// [0, 100], a duplicate arch with two values, percentages and fractions mixed (naming a row of
/// each).
pub fn read_truth(path: &Path, check: &mut ArchCheck) -> Result<Truth> {
    let table = read_table(path)?;
    let need = "the retrained accuracies need a header line `arch,accuracy`";
    let Some(h) = &table.header else {
        bail!(
            "{}: no header line; {need} (accuracy in % or as a fraction)",
            path.display()
        );
    };
    let cols = (
        column(path, h, "arch", need)?,
        column(path, h, "accuracy", need)?,
    );
    let in_range = |v: f64| {
        if (0.0..=100.0).contains(&v) {
            Ok(())
        } else {
            Err("is outside 0..=100; give % or a fraction in [0, 1]".to_string())
        }
    };
    let (mut values, lines) = read_pairs(path, &table, cols, "accuracy", in_range, check)?;
    let row = |pick: &dyn Fn(f64) -> bool| {
        (values.entries.iter().zip(&lines))
            .find_map(|((_, v), line)| pick(*v).then_some((*v, line)))
    };
    let percent = row(&|v| v > 1.0);
    if let (Some((pct, pct_line)), Some((frac, frac_line))) =
        (percent, row(&|v| v > 0.0 && v <= 1.0))
    {
        bail!(
            "{} line {frac_line}, column {}: accuracy {frac} reads as a fraction, but line \
             {pct_line} has {pct}, a percentage; give every accuracy in % or every one as a \
             fraction in [0, 1]",
            path.display(),
            cols.1 + 1
        );
    }
    let percent = percent.is_some();
    if percent {
        values.entries.iter_mut().for_each(|(_, v)| *v /= 100.0);
    }
    Ok(Truth { values, percent })
}

/// Distinct archs of `space` listed in `path`: its `arch` column when the first line is a
/// header naming one, else the first field of every line.
///
/// # Errors
/// An unreadable or empty file, an arch that does not fit `space` (naming its line).
pub fn read_archs(path: &Path, space: &Space) -> Result<Vec<Arch>> {
    let table = read_table(path)?;
    let col = match &table.header {
        Some(h) => column(path, h, "arch", "name the archs' column `arch`")?,
        None => 0,
    };
    let mut check = ArchCheck::new(Some(space.clone()));
    let mut out: Vec<Arch> = Vec::new();
    for (line, fields) in &table.rows {
        let at = format!("{} line {line}, column {}", path.display(), col + 1);
        let field = fields
            .get(col)
            .with_context(|| format!("{at}: the line has no field there"))?;
        let arch = check.parse(field, &at)?;
        if !out.contains(&arch) {
            out.push(arch);
        }
    }
    if out.is_empty() {
        bail!("{} lists no archs", path.display());
    }
    Ok(out)
}

/// Per-unit values of several settings, read from a `--paired` CSV: the header's first column
/// names the unit the settings share (e.g. `seed`), the second the base setting, every further
/// one a setting compared with the base.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedTable {
    /// The unit's column name.
    pub unit: String,
    /// The settings' column names, the base first.
    pub settings: Vec<String>,
    /// Per setting, its value for each unit (rows in file order).
    pub values: Vec<Vec<f64>>,
}

/// Reads a `--paired` CSV (see [`PairedTable`]).
///
/// # Errors
/// An unreadable file; fewer than three columns or two rows; a row of another length, a value
/// that is not a finite number, a unit listed twice (each names the file, line and column).
pub fn read_paired(path: &Path) -> Result<PairedTable> {
    let mut table = read_table(path)?;
    let (hline, header) = match table.header.take() {
        Some(h) => h,
        None if !table.rows.is_empty() => table.rows.remove(0),
        None => bail!("{} has no lines", path.display()),
    };
    if header.len() < 3 {
        bail!(
            "{} line {hline}: {} column(s); a paired file needs the unit (e.g. `seed`), the base \
             setting and at least one setting to compare, e.g. `seed,off,accumulate`",
            path.display(),
            header.len()
        );
    }
    let mut values = vec![Vec::new(); header.len() - 1];
    let mut units: HashMap<String, usize> = HashMap::new();
    for (line, fields) in &table.rows {
        let at = |c: usize| format!("{} line {line}, column {}", path.display(), c + 1);
        if fields.len() != header.len() {
            bail!(
                "{} line {line}: {} field(s), the header (line {hline}) has {}",
                path.display(),
                fields.len(),
                header.len()
            );
        }
        if let Some(first) = units.insert(fields[0].clone(), *line) {
            bail!(
                "{}: {} {} is also on line {first}; give each unit one row",
                at(0),
                header[0],
                fields[0]
            );
        }
        for (c, f) in fields.iter().enumerate().skip(1) {
            let v: f64 = f
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| format!("{}: {} {f:?} is not a number", at(c), header[c]))?;
            values[c - 1].push(v);
        }
    }
    if table.rows.len() < 2 {
        bail!(
            "{}: {} data row(s); an interval needs at least two units",
            path.display(),
            table.rows.len()
        );
    }
    Ok(PairedTable {
        unit: header[0].clone(),
        settings: header[1..].to_vec(),
        values,
    })
}

/// The archs both inputs have, with their values, plus those only one of them has.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Archs in both, in the truth file's order.
    pub archs: Vec<Arch>,
    /// Supernet goodness (higher is better) of each.
    pub supernet: Vec<f64>,
    /// Raw supernet value of each (as read).
    pub supernet_raw: Vec<f64>,
    /// True accuracy (fraction) of each.
    pub accuracy: Vec<f64>,
    /// Archs with a retrained accuracy but no supernet score.
    pub no_score: Vec<Arch>,
    /// Archs with a supernet score but no retrained accuracy.
    pub no_truth: Vec<Arch>,
}

/// Pairs supernet scores with true accuracies by arch
/// ([`shiftnas_calibration::ranking::pair`]).
pub fn pair(scores: &SupernetScores, truth: &Truth) -> Paired {
    let p = shiftnas_calibration::ranking::pair(&scores.values.entries, &truth.values.entries);
    Paired {
        archs: p.keys,
        supernet: p.score.iter().map(|&v| scores.goodness(v)).collect(),
        supernet_raw: p.score,
        accuracy: p.truth,
        no_score: p.no_score,
        no_truth: p.no_truth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn arch_lists_read_a_column_or_first_fields_and_check_the_space() {
        let d = tempfile::tempdir().unwrap();
        let tiny = Space::by_name("tiny").unwrap();
        let (a, b) = ("0".repeat(20), "3".repeat(20));
        let p = write(
            d.path(),
            "t.csv",
            &format!("accuracy,arch\n90,{a}\n80,{b}\n81,{a}\n"),
        );
        let want: Vec<Arch> = vec![a.parse().unwrap(), b.parse().unwrap()];
        assert_eq!(read_archs(&p, &tiny).unwrap(), want);
        let p = write(d.path(), "l.txt", &format!("# tracked\n{a}\n{b}\n"));
        assert_eq!(read_archs(&p, &tiny).unwrap(), want);
        let p = write(d.path(), "bad.txt", &format!("{a}\n0123\n"));
        let e = err(read_archs(&p, &tiny));
        assert!(e.contains("bad.txt line 2, column 1"), "{e}");
        let p = write(d.path(), "empty.txt", "# nothing\n");
        assert!(err(read_archs(&p, &tiny)).contains("lists no archs"));
    }

    #[test]
    fn paired_files_read_units_and_settings_and_errors_name_the_place() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "p.csv",
            "# local tau-b per seed\nseed,off,accumulate,immediate\n1,0.1,0.25,0.3\n2,-0.2,0.05,0\n",
        );
        let t = read_paired(&p).unwrap();
        assert_eq!(t.unit, "seed");
        assert_eq!(t.settings, ["off", "accumulate", "immediate"]);
        assert_eq!(
            t.values,
            [vec![0.1, -0.2], vec![0.25, 0.05], vec![0.3, 0.0]]
        );
        for (text, want) in [
            ("seed,off\n1,2\n2,3\n", "line 1: 2 column(s)"),
            ("seed,off,acc\n1,2,3\n", "1 data row(s)"),
            (
                "seed,off,acc\n1,2,3\n2,3\n",
                "line 3: 2 field(s), the header (line 1) has 3",
            ),
            (
                "seed,off,acc\n1,2,3\n2,x,3\n",
                "line 3, column 2: off \"x\" is not a number",
            ),
            (
                "seed,off,acc\n1,2,3\n1,3,4\n",
                "line 3, column 1: seed 1 is also on line 2",
            ),
        ] {
            let p = write(d.path(), "bad.csv", text);
            let e = err(read_paired(&p));
            assert!(e.contains("bad.csv") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn rank_truth_csv_in_percent_or_fractions_with_extra_columns() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.csv",
            "# retrained\nseed,accuracy,arch\n1,91.5,0123\n1,80,3210\n\n2,91.5,0123\n",
        );
        let t = read_truth(&p, &mut ArchCheck::new(None)).unwrap();
        assert!(t.percent);
        let want = vec![
            ("0123".parse().unwrap(), 0.915),
            ("3210".parse().unwrap(), 0.8),
        ];
        assert_eq!(t.values.entries, want);
        // A byte-order mark and CRLF line ends (spreadsheet exports) are fine.
        let p = write(
            d.path(),
            "f.csv",
            "\u{feff}arch,accuracy\r\n0123,0.915\r\n3210,1\r\n",
        );
        let t = read_truth(&p, &mut ArchCheck::new(None)).unwrap();
        assert!(!t.percent);
        assert_eq!(t.values.entries[1].1, 1.0);
    }

    #[test]
    fn rank_truth_mixing_percent_and_fractions_is_an_error_naming_both_rows() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.csv",
            "arch,accuracy\n0000,0\n0123,91.5\n3210,0.72\n1111,80\n",
        );
        let e = err(read_truth(&p, &mut ArchCheck::new(None)));
        assert!(
            e.contains("t.csv line 4, column 2: accuracy 0.72 reads as a fraction")
                && e.contains("line 3 has 91.5, a percentage"),
            "{e}"
        );
        // The fraction first: the same two rows are named.
        let p = write(d.path(), "t.csv", "arch,accuracy\n3210,1\n0123,91.5\n");
        let e = err(read_truth(&p, &mut ArchCheck::new(None)));
        assert!(
            e.contains("line 2, column 2: accuracy 1 ") && e.contains("line 3 has 91.5"),
            "{e}"
        );
        // 0 is 0 in either unit.
        let p = write(d.path(), "t.csv", "arch,accuracy\n0000,0\n0123,91.5\n");
        let t = read_truth(&p, &mut ArchCheck::new(None)).unwrap();
        assert!(t.percent);
        assert_eq!(t.values.entries[0].1, 0.0);
        assert!((t.values.entries[1].1 - 0.915).abs() < 1e-12);
    }

    #[test]
    fn rank_truth_errors_name_file_line_and_column() {
        let d = tempfile::tempdir().unwrap();
        let tiny = || ArchCheck::new(Some(Space::tiny()));
        let a = "01230123012301230123";
        let cases = [
            ("0123,91\n", "no header"),
            (
                "# run 3\n\nArch,ACC\n0123,91\n",
                "line 3: no `accuracy` column (found: arch, acc)",
            ),
            (
                "arch,acc\n0123,91\n",
                "line 1: no `accuracy` column (found: arch, acc)",
            ),
            (
                "arch,accuracy\n0123,9x\n",
                "line 2, column 2: accuracy \"9x\" is not a number",
            ),
            ("arch,accuracy\n0123,91\n0123,nan\n", "line 3, column 2"),
            (
                "arch,accuracy\n0123,101\n",
                "line 2, column 2: accuracy 101 is outside 0..=100",
            ),
            ("arch,accuracy\n0123,-1\n", "outside 0..=100"),
            (
                "arch,accuracy\n0123\n",
                "line 2, column 2: the line has only 1 field(s)",
            ),
            ("arch,accuracy\n", "has no data rows"),
        ];
        for (text, want) in cases {
            let p = write(d.path(), "t.csv", text);
            let e = err(read_truth(&p, &mut ArchCheck::new(None)));
            assert!(e.contains("t.csv") && e.contains(want), "{text:?}: {e}");
        }
        let p = write(d.path(), "t.csv", "arch,accuracy\n0123,91\n");
        let e = err(read_truth(&p, &mut tiny()));
        assert!(
            e.contains("line 2, column 1: arch \"0123\" has 4 digits"),
            "{e}"
        );
        let p = write(
            d.path(),
            "t.csv",
            &format!("arch,accuracy\n{a},90\n{}7,90\n", &a[..19]),
        );
        let e = err(read_truth(&p, &mut tiny()));
        assert!(
            e.contains("line 3, column 1") && e.contains("position 19"),
            "{e}"
        );
        let p = write(
            d.path(),
            "t.csv",
            &format!("arch,accuracy\n{a},90\nx,1\n{a},91\n"),
        );
        let e = err(read_truth(&p, &mut ArchCheck::new(None)));
        assert!(e.contains("line 3, column 1") && e.contains("'x'"), "{e}");
        let p = write(
            d.path(),
            "t.csv",
            &format!("arch,accuracy\n{a},90\n\n{a},91\n"),
        );
        let e = err(read_truth(&p, &mut tiny()));
        assert!(
            e.contains("line 4, column 2") && e.contains("90 on line 2"),
            "{e}"
        );
        assert!(e.contains("average repeated runs"), "{e}");
        // Without a space, archs must share one length across files.
        let p = write(d.path(), "t.csv", "arch,accuracy\n0123,90\n012,80\n");
        let e = err(read_truth(&p, &mut ArchCheck::new(None)));
        assert!(
            e.contains("line 3, column 1") && e.contains("line 2, column 1 has 4"),
            "{e}"
        );
        assert!(err(read_truth(&d.path().join("none.csv"), &mut tiny())).contains("none.csv"));
    }

    #[test]
    fn rank_archs_file_headerless_pareto_csv_or_accuracy_column() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "a.txt", "0123 0.3\n3210\t0.25\n");
        let s = scores_from_csv(&p, &mut ArchCheck::new(None)).unwrap();
        assert_eq!((s.column.as_str(), s.higher_is_better), ("error", false));
        assert_eq!(s.values.entries[1], ("3210".parse().unwrap(), 0.25));
        assert_eq!(s.goodness(0.25), -0.25);
        let p = write(
            d.path(),
            "pareto.csv",
            "arch,error,latency,latency_source,flops,params,supernet_step\n0123,0.3,1.5,flops,10,20,5\n",
        );
        let s = scores_from_csv(&p, &mut ArchCheck::new(None)).unwrap();
        assert_eq!(s.values.entries, vec![("0123".parse().unwrap(), 0.3)]);
        let p = write(d.path(), "a.csv", "arch,accuracy\n0123,0.7\n");
        let s = scores_from_csv(&p, &mut ArchCheck::new(None)).unwrap();
        assert!(s.higher_is_better && s.goodness(0.7) == 0.7);
        let p = write(d.path(), "a.csv", "arch,latency\n0123,0.7\n");
        let e = err(scores_from_csv(&p, &mut ArchCheck::new(None)));
        assert!(
            e.contains("a.csv line 1: no `accuracy` column") && e.contains("`error`"),
            "{e}"
        );
        let p = write(d.path(), "a.txt", "0123 0.3\n0123 zero\n");
        let e = err(scores_from_csv(&p, &mut ArchCheck::new(None)));
        assert!(
            e.contains("a.txt line 2, column 2: supernet error \"zero\""),
            "{e}"
        );
    }

    #[test]
    fn rank_archive_keeps_each_archs_latest_score() {
        use shiftnas_calibration::ranking::figures;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("archive.jsonl");
        let rec = |arch: &str, error: f64, step: u64| archive::ArchiveRecord {
            generation: 1,
            arch: arch.parse().unwrap(),
            error,
            latency: 1.0,
            latency_source: "flops".into(),
            latency_interval: None,
            flops: 1,
            params: 1,
            supernet_step: step,
        };
        // Archs a..e; "1111" is re-scored after a shift and its latest error (0.10) counts.
        for r in [
            rec("0000", 0.40, 100),
            rec("1111", 0.50, 100),
            rec("2222", 0.30, 100),
            rec("3333", 0.20, 110),
            rec("1111", 0.10, 120),
            rec("0123", 0.90, 120),
        ] {
            archive::append(&path, &r).unwrap();
        }
        let mut check = ArchCheck::new(None);
        let s = scores_from_archive(&path, &mut check).unwrap();
        assert_eq!(
            (s.values.entries.len(), s.rescored, s.steps.len()),
            (5, 1, 3)
        );
        let t = write(
            d.path(),
            "t.csv",
            "arch,accuracy\n0000,70\n1111,95\n2222,80\n3333,90\n4444,60\n",
        );
        let t = read_truth(&t, &mut check).unwrap();
        let p = pair(&s, &t);
        assert_eq!(p.archs.len(), 4);
        assert_eq!(p.no_score, vec!["4444".parse().unwrap()]);
        assert_eq!(p.no_truth, vec!["0123".parse().unwrap()]);
        // Supernet order 1111, 3333, 2222, 0000 equals the true order: every figure is 1.
        let f = figures(&p.supernet, &p.accuracy, 2).unwrap();
        assert_eq!(
            (f.overlap, f.local_tau_b, f.tau_b),
            (2, Some(1.0), Some(1.0))
        );
        // Had the first score of 1111 (0.50, the worst) been kept, it would rank last.
        assert_eq!(p.supernet_raw[1], 0.10);
        let bad = d.path().join("bad.jsonl");
        std::fs::write(&bad, "").unwrap();
        assert!(err(scores_from_archive(&bad, &mut check)).contains("holds no records"));
        let e = err(scores_from_archive(
            &path,
            &mut ArchCheck::new(Some(Space::tiny())),
        ));
        assert!(
            e.contains("archive.jsonl record 1 (arch 0000)") && e.contains("20 digits"),
            "{e}"
        );
    }
}

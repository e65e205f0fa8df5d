//! CPU lists (`4-7`, `0,2,4-5`) and pinning the agent to them.
//!
//! The agent pins its own thread with `sched_setaffinity` *before* the runtime creates its
//! intra-op thread pool: threads inherit their creator's mask, so ORT's workers stay on the same
//! cores without ORT's own affinity options (whose syntax differs between versions).

use anyhow::{Context, Result, bail};

/// Parses a Linux-style CPU list: comma-separated numbers and inclusive ranges, e.g. `0,2,4-7`.
///
/// Returns the sorted, de-duplicated CPU numbers.
///
/// # Errors
/// Names the bad item, e.g. `"7-4": range end before start`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for item in s.split(',').map(str::trim) {
        if item.is_empty() {
            bail!("empty item in CPU list {s:?}; write e.g. 4-7 or 0,2,4-5");
        }
        let parse = |t: &str| -> Result<usize> {
            let t = t.trim();
            t.parse::<usize>()
                .with_context(|| format!("{t:?} in CPU list {s:?} is not a CPU number"))
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if b < a {
                    bail!("{item:?} in CPU list {s:?}: range end before start");
                }
                // Checked before expanding, so `0-99999999999` cannot fill memory.
                check_cpu(b, s)?;
                cpus.extend(a..=b);
            }
            None => cpus.push(check_cpu(parse(item)?, s)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

fn check_cpu(cpu: usize, list: &str) -> Result<usize> {
    if cpu >= libc::CPU_SETSIZE as usize {
        bail!(
            "CPU {cpu} in {list:?} is beyond the {} CPUs Linux affinity masks hold",
            libc::CPU_SETSIZE
        );
    }
    Ok(cpu)
}

/// Formats CPUs as a compact list (`4-7`, `0,2,4-5`); the inverse of [`parse_cpu_list`].
pub fn format_cpu_list(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The calling thread's current CPU mask.
///
/// # Errors
/// The OS error of `sched_getaffinity`.
pub fn current() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set and the size passed matches.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Pins the calling thread (and every thread it creates afterwards) to `cpus`.
///
/// # Errors
/// When `cpus` is empty or the kernel refuses (e.g. a CPU that is offline or outside the
/// container's cpuset); the message names the CPUs and the ones allowed.
pub fn pin(cpus: &[usize]) -> Result<()> {
    if cpus.is_empty() {
        bail!("cannot pin to an empty CPU list");
    }
    // SAFETY: as in `current`; CPU_SET indices were bounds-checked by parse_cpu_list.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                bail!("CPU {c} is beyond the affinity mask size");
            }
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        let allowed = current()
            .map(|c| format_cpu_list(&c))
            .unwrap_or_else(|_| "?".into());
        bail!(
            "cannot pin to CPUs {}: {err}; this process may use CPUs {allowed} (check --cores and `nproc`)",
            format_cpu_list(cpus)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(parse_cpu_list("4-7").unwrap(), vec![4, 5, 6, 7]);
        assert_eq!(parse_cpu_list("0,2,4-5").unwrap(), vec![0, 2, 4, 5]);
        assert_eq!(parse_cpu_list(" 3 , 1,1 ").unwrap(), vec![1, 3]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        assert!(
            parse_cpu_list("7-4")
                .unwrap_err()
                .to_string()
                .contains("range end before start")
        );
        assert!(
            parse_cpu_list("a")
                .unwrap_err()
                .to_string()
                .contains("not a CPU number")
        );
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("99999").is_err());
    }

    #[test]
    fn formats_back() {
        for s in ["4-7", "0,2,4-5", "1", "0-1,3"] {
            assert_eq!(format_cpu_list(&parse_cpu_list(s).unwrap()), s);
        }
    }

    #[test]
    fn pins_and_restores_in_a_thread() {
        std::thread::spawn(|| {
            let all = current().unwrap();
            let first = all[0];
            pin(&[first]).unwrap();
            assert_eq!(current().unwrap(), vec![first]);
            pin(&all).unwrap();
            assert_eq!(current().unwrap(), all);
        })
        .join()
        .unwrap();
    }
}

//! `--shard K/N` and `--shard auto`: which slice of a phase's items a run evaluates, given on
//! the command line or read from the scheduler that started it (a Slurm job array, a
//! Kubernetes Indexed Job).

use crate::vars::ProcessVars;

/// One of N disjoint slices of a phase's items: item i (in the phase's order, after `--limit`)
/// belongs to shard i mod N, the stride split lm-eval's data-parallel ranks use, which also
/// spreads long and short items evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, from 0.
    pub index: usize,
    /// N, at least 1.
    pub count: usize,
}

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(Self { index, count })
    }

    /// Whether the item at `position` is this shard's.
    pub fn holds(self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// This shard's items of `items` (a phase's, in order), in order.
    pub fn select<T>(self, items: Vec<T>) -> Vec<T> {
        items.into_iter().enumerate().filter(|(i, _)| self.holds(*i)).map(|(_, it)| it).collect()
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        let bad = || ShardError::Syntax(text.to_string());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        Shard::new(k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

crate::device::serde_as_text!(Shard);

/// A `--shard` that names no slice, or scheduler variables that do not name one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {0}: expected K/N (shard K of N, counting from 0) or auto")]
    Syntax(String),
    #[error("--shard {index}/{count}: K must be below N (shards count from 0: 0/{count} … {last}/{count})", last = count.saturating_sub(1))]
    OutOfRange { index: usize, count: usize },
    #[error("--shard auto: {0}")]
    Scheduler(String),
}

/// `--shard` as given: a slice, or `auto` (the scheduler's variables say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardChoice {
    Auto,
    Fixed(Shard),
}

impl std::str::FromStr for ShardChoice {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Self, ShardError> {
        if text == "auto" {
            Ok(ShardChoice::Auto)
        } else {
            text.parse().map(ShardChoice::Fixed)
        }
    }
}

impl ShardChoice {
    /// The slice this names, `auto` from the scheduler's variables in `vars` (the binary
    /// passes the process's; tests build their own). An explicit K/N wins over them.
    pub fn resolve(self, vars: &ProcessVars) -> Result<Shard, ShardError> {
        match self {
            ShardChoice::Fixed(shard) => Ok(shard),
            ShardChoice::Auto => from_scheduler(&|name| vars.get_str(name).map(str::to_string)),
        }
    }
}

/// Shard K of N from the scheduler: Slurm's job array (`SLURM_ARRAY_TASK_ID`, `_COUNT`, `_MIN`,
/// `_MAX`, `_STEP`) or a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with N from
/// `BENCHGEN_SHARDS`, since an Indexed Job does not publish its size). Both present must agree.
fn from_scheduler(var: &impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
    let slurm = slurm(var)?;
    let k8s = kubernetes(var)?;
    match (slurm, k8s) {
        (Some(s), Some(k)) if s != k => Err(ShardError::Scheduler(format!(
            "Slurm says shard {s} (SLURM_ARRAY_TASK_*) but Kubernetes says {k} (JOB_COMPLETION_INDEX, BENCHGEN_SHARDS); give --shard K/N"
        ))),
        (Some(s), _) | (None, Some(s)) => Ok(s),
        (None, None) => Err(ShardError::Scheduler(
            "no scheduler variables: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give --shard K/N".into(),
        )),
    }
}

fn number(var: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<usize>, ShardError> {
    match var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ShardError::Scheduler(format!("{name}={v:?} is not a whole number"))),
    }
}

fn slurm(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ShardError> {
    let Some(id) = number(var, "SLURM_ARRAY_TASK_ID")? else { return Ok(None) };
    let need = |name: &str| {
        number(var, name)?.ok_or_else(|| {
            ShardError::Scheduler(format!("SLURM_ARRAY_TASK_ID is set but {name} is not"))
        })
    };
    let (count, min) = (need("SLURM_ARRAY_TASK_COUNT")?, need("SLURM_ARRAY_TASK_MIN")?);
    let step = number(var, "SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    let max = number(var, "SLURM_ARRAY_TASK_MAX")?;
    // A range min-max:step holds (max - min) / step + 1 tasks; a list such as 0,3,7 does not,
    // and its ids cannot be mapped onto 0..N.
    let regular = max.is_none_or(|max| max >= min && (max - min) / step + 1 == count);
    if !regular || id < min || (id - min) % step != 0 {
        return Err(ShardError::Scheduler(format!(
            "the Slurm job array is not a range MIN-MAX[:STEP] (task {id}, min {min}, max {}, step {step}, count {count}); \
             submit it as --array=0-{}, or give --shard K/N",
            max.map_or_else(|| "unset".to_string(), |m| m.to_string()),
            count.saturating_sub(1)
        )));
    }
    Shard::new((id - min) / step, count).map(Some)
}

fn kubernetes(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ShardError> {
    let Some(index) = number(var, "JOB_COMPLETION_INDEX")? else { return Ok(None) };
    let count = number(var, "BENCHGEN_SHARDS")?.ok_or_else(|| {
        ShardError::Scheduler(
            "JOB_COMPLETION_INDEX is set but BENCHGEN_SHARDS is not: set it to the Job's completions (an Indexed Job does not publish its size)".into(),
        )
    })?;
    Shard::new(index, count).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> ProcessVars {
        pairs.iter().copied().collect()
    }

    #[test]
    fn shards_parse_print_and_hold_every_nth_item() {
        let s: Shard = "1/4".parse().unwrap();
        assert_eq!((s.index, s.count, s.to_string()), (1, 4, "1/4".to_string()));
        let held: Vec<usize> = (0..10).filter(|&i| s.holds(i)).collect();
        assert_eq!(s.select((0..10).collect::<Vec<usize>>()), held);
        assert_eq!(held, [1, 5, 9]);
        for bad in ["4/4", "0/0", "1", "a/b", "-1/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let e = "4/4".parse::<Shard>().unwrap_err().to_string();
        assert!(e.contains("0/4 … 3/4"), "{e}");
        assert_eq!("auto".parse::<ShardChoice>().unwrap(), ShardChoice::Auto);
    }

    #[test]
    fn slurm_arrays_map_onto_shards() {
        // --array=0-6:2: ids 0, 2, 4, 6, count 4.
        let array = |id: &str| {
            vars(&[
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "6"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ])
        };
        for (id, k) in [("0", 0), ("2", 1), ("4", 2), ("6", 3)] {
            assert_eq!(ShardChoice::Auto.resolve(&array(id)).unwrap(), Shard::new(k, 4).unwrap());
        }
        // --array=5-8: ids from 5.
        let v = vars(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
        ]);
        assert_eq!(ShardChoice::Auto.resolve(&v).unwrap(), Shard::new(2, 4).unwrap());
        // --array=0,3,7: a list, refused.
        let v = vars(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ]);
        let e = ShardChoice::Auto.resolve(&v).unwrap_err().to_string();
        assert!(e.contains("not a range"), "{e}");
        // An explicit K/N wins over the scheduler.
        let fixed = ShardChoice::Fixed(Shard::new(0, 2).unwrap());
        assert_eq!(fixed.resolve(&array("6")).unwrap(), Shard::new(0, 2).unwrap());
        let e = ShardChoice::Auto
            .resolve(&vars(&[("SLURM_ARRAY_TASK_ID", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT is not"), "{e}");
    }

    #[test]
    fn kubernetes_indexed_jobs_need_their_size() {
        let v = vars(&[("JOB_COMPLETION_INDEX", "2"), ("BENCHGEN_SHARDS", "3")]);
        assert_eq!(ShardChoice::Auto.resolve(&v).unwrap(), Shard::new(2, 3).unwrap());
        let e = ShardChoice::Auto
            .resolve(&vars(&[("JOB_COMPLETION_INDEX", "2")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("BENCHGEN_SHARDS"), "{e}");
        let e = ShardChoice::Auto
            .resolve(&vars(&[("JOB_COMPLETION_INDEX", "3"), ("BENCHGEN_SHARDS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("K must be below N"), "{e}");
        let both = vars(&[
            ("JOB_COMPLETION_INDEX", "1"),
            ("BENCHGEN_SHARDS", "2"),
            ("SLURM_ARRAY_TASK_ID", "0"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ]);
        let e = ShardChoice::Auto.resolve(&both).unwrap_err().to_string();
        assert!(e.contains("Slurm says shard 0/2"), "{e}");
        let e = ShardChoice::Auto.resolve(&vars(&[])).unwrap_err().to_string();
        assert!(e.contains("no scheduler variables"), "{e}");
    }
}

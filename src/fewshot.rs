//! Which few-shot examples each item gets.
//!
//! Choices depend only on the example pool, the settings and the item's own id, never on which
//! other items are evaluated: `--limit`, resuming and re-running give every item the same
//! examples. That is where this departs from lm-evaluation-harness's `random` sampler, whose one
//! `random.Random(seed)` advances from document to document; `first_n` is the same as lm-eval's.

use crate::env::manifest::{FewshotSampler, FewshotSpec};
use crate::env::Item;
use crate::rng::SplitMix64;

/// The few-shot phase's items and how to draw from them.
#[derive(Debug, Clone)]
pub struct Fewshot {
    pub spec: FewshotSpec,
    /// How many examples each item gets (the phase's override or `[fewshot] n`).
    pub n: usize,
    pub pool: Vec<Item>,
    /// The evaluated phase is the few-shot phase: an item must not be its own example.
    pub exclude_self: bool,
}

impl Fewshot {
    /// The examples for `item`, in prompt order. Fewer than `n` only when the pool is too small.
    pub fn select(&self, item: &Item) -> Vec<&Item> {
        let candidates: Vec<&Item> =
            self.pool.iter().filter(|ex| !(self.exclude_self && ex.id == item.id)).collect();
        match self.spec.sampler {
            // As lm-eval: the first n (n + 1 when drawing from the evaluated split), minus the item.
            FewshotSampler::FirstN => candidates.into_iter().take(self.n).collect(),
            FewshotSampler::Random => {
                let mut rng = SplitMix64::new(crate::engine::sampling::item_seed(self.spec.seed, &item.id));
                let mut picked = candidates;
                let take = self.n.min(picked.len());
                // A partial Fisher–Yates shuffle: the first `take` slots are a uniform draw.
                for i in 0..take {
                    let j = i + rng.below((picked.len() - i) as u64) as usize;
                    picked.swap(i, j);
                }
                picked.truncate(take);
                picked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Item {
        Item {
            id: id.into(),
            fields: serde_json::Map::new(),
            target: String::new(),
            targets: vec![],
            choices: vec![],
            choice_labels: vec![],
            target_index: None,
        }
    }

    fn fewshot(sampler: FewshotSampler, n: usize, pool: usize, exclude_self: bool) -> Fewshot {
        let spec = FewshotSpec {
            phase: "train".into(),
            n,
            sampler,
            seed: 1234,
            template: None,
            target: None,
            target_delimiter: " ".into(),
            separator: "\n\n".into(),
        };
        Fewshot { spec, n, pool: (0..pool).map(|i| item(&format!("t{i}"))).collect(), exclude_self }
    }

    fn ids(examples: &[&Item]) -> Vec<String> {
        examples.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn first_n_takes_the_pool_in_file_order() {
        let f = fewshot(FewshotSampler::FirstN, 3, 10, false);
        assert_eq!(ids(&f.select(&item("q7"))), ["t0", "t1", "t2"]);
        // Another phase's item that happens to share an id is not excluded.
        assert_eq!(ids(&f.select(&item("t1"))), ["t0", "t1", "t2"]);
    }

    #[test]
    fn an_item_of_the_fewshot_phase_never_sees_itself() {
        let f = fewshot(FewshotSampler::FirstN, 3, 10, true);
        assert_eq!(ids(&f.select(&item("t1"))), ["t0", "t2", "t3"]);
        assert_eq!(ids(&f.select(&item("t5"))), ["t0", "t1", "t2"]);
        let r = fewshot(FewshotSampler::Random, 9, 10, true);
        for i in 0..10 {
            let id = format!("t{i}");
            let got = ids(&r.select(&item(&id)));
            assert_eq!(got.len(), 9);
            assert!(!got.contains(&id), "{id} in {got:?}");
        }
    }

    #[test]
    fn random_is_stable_distinct_and_depends_on_seed_and_item() {
        let f = fewshot(FewshotSampler::Random, 5, 50, false);
        let a = ids(&f.select(&item("q1")));
        // A fresh sampler (another run, or a run with --limit) draws the same.
        assert_eq!(ids(&fewshot(FewshotSampler::Random, 5, 50, false).select(&item("q1"))), a);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{a:?}");
        assert_ne!(a, ["t0", "t1", "t2", "t3", "t4"], "not a random draw");
        assert_ne!(ids(&f.select(&item("q2"))), a, "every item gets its own draw");
        let mut other_seed = fewshot(FewshotSampler::Random, 5, 50, false);
        other_seed.spec.seed = 1235;
        assert_ne!(ids(&other_seed.select(&item("q1"))), a);
    }

    #[test]
    fn random_draws_of_one_item_do_not_depend_on_the_others() {
        // What --limit changes is which items are asked for, in which order: simulate it.
        let f = fewshot(FewshotSampler::Random, 4, 30, false);
        let all: Vec<Vec<String>> = (0..20).map(|i| ids(&f.select(&item(&format!("q{i}"))))).collect();
        let fresh = fewshot(FewshotSampler::Random, 4, 30, false);
        for i in (0..5).rev() {
            assert_eq!(ids(&fresh.select(&item(&format!("q{i}")))), all[i]);
        }
    }

    #[test]
    fn a_small_pool_gives_what_it_has() {
        let f = fewshot(FewshotSampler::Random, 5, 3, false);
        assert_eq!(f.select(&item("q")).len(), 3);
        let f = fewshot(FewshotSampler::FirstN, 5, 3, true);
        assert_eq!(ids(&f.select(&item("t0"))), ["t1", "t2"]);
    }
}

//! Which few-shot examples each item gets.
//!
//! `first_n` and `lm_eval` are lm-evaluation-harness's samplers (`first_n` and its default one),
//! chosen exactly as lm-eval 0.4 chooses them: `lm_eval` replays its one `random.Random(seed)`
//! (CPython's Mersenne Twister, [`crate::pyrandom`]) advancing from document to document, so an
//! item's examples depend on its position in the phase and on the draws of the items before it.
//! They are computed for positions 0..=i in order, whichever items are asked for, so `--limit`
//! (a prefix), resuming and re-running still give every item the examples a full run gives it.
//! `random` is benchgen's own: a draw seeded by `seed` and the item's id alone, independent of
//! the other items and of their order.

use std::sync::{Mutex, PoisonError};

use crate::env::manifest::{FewshotSampler, FewshotSpec, PhaseSpec};
use crate::env::{Environment, Item};
use crate::error::{Error, Result};
use crate::pyrandom::PyRandom;
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
    /// `lm_eval`'s draws, made on first use from `spec.seed` and `pool`.
    stream: Stream,
}

impl Fewshot {
    pub fn new(spec: FewshotSpec, n: usize, pool: Vec<Item>, exclude_self: bool) -> Self {
        Self { spec, n, pool, exclude_self, stream: Stream::default() }
    }

    /// The examples for `item`, the phase's item at position `index` of its full item order
    /// (file order; only `lm_eval` looks at it), in prompt order. Fewer than `n` only when the
    /// pool is too small, or, with `lm_eval` as in lm-eval, when a drawn example equals the item.
    pub fn select(&self, index: usize, item: &Item) -> Vec<&Item> {
        match self.spec.sampler {
            // As lm-eval: the first n (n + 1 when drawing from the evaluated split), minus the item.
            FewshotSampler::FirstN => self.candidates(item).into_iter().take(self.n).collect(),
            FewshotSampler::Random => {
                let mut rng = SplitMix64::new(crate::rng::item_seed(self.spec.seed, &item.id));
                let mut picked = self.candidates(item);
                let take = self.n.min(picked.len());
                // A partial Fisher–Yates shuffle: the first `take` slots are a uniform draw.
                for i in 0..take {
                    let j = i + rng.below((picked.len() - i) as u64) as usize;
                    picked.swap(i, j);
                }
                picked.truncate(take);
                picked
            }
            FewshotSampler::LmEval => {
                // lm-eval draws n + 1 from its own split, n from another; where Python would
                // refuse a sample larger than the pool, this takes the whole pool.
                let k = (self.n + usize::from(self.exclude_self)).min(self.pool.len());
                let drawn =
                    self.stream.draw(index, self.spec.seed, |rng| rng.sample(self.pool.len(), k));
                // lm-eval's `x != doc` compares whole documents: a row equal to the item's is
                // dropped whichever split it comes from.
                drawn
                    .into_iter()
                    .map(|i| &self.pool[i])
                    .filter(|ex| ex.fields != item.fields)
                    .take(self.n)
                    .collect()
            }
        }
    }

    fn candidates(&self, item: &Item) -> Vec<&Item> {
        self.pool.iter().filter(|ex| !(self.exclude_self && ex.id == item.id)).collect()
    }
}

/// lm-eval's one generator and the pool indices it drew for positions 0, 1, …: position i's
/// draw needs every draw before it, so each is made once and kept.
#[derive(Debug, Default)]
struct Stream(Mutex<Option<Draws>>);

#[derive(Debug, Clone)]
struct Draws {
    rng: PyRandom,
    by_position: Vec<Vec<usize>>,
}

impl Stream {
    fn draw(
        &self,
        index: usize,
        seed: u64,
        sample: impl Fn(&mut PyRandom) -> Option<Vec<usize>>,
    ) -> Vec<usize> {
        // Draws are only ever appended whole, so a panic elsewhere cannot leave them half made.
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let draws = guard
            .get_or_insert_with(|| Draws { rng: PyRandom::new(seed), by_position: Vec::new() });
        while draws.by_position.len() <= index {
            // `k` never exceeds the pool, so Python's refusal cannot happen.
            let picked = sample(&mut draws.rng).unwrap_or_default();
            draws.by_position.push(picked);
        }
        draws.by_position[index].clone()
    }
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        Self(Mutex::new(self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()))
    }
}

/// The few-shot examples available to `phase`'s items of `env`; `None` when they get none.
pub fn for_phase(env: &Environment, phase: &PhaseSpec) -> Result<Option<Fewshot>> {
    let (Some(spec), Some(source)) = (&env.manifest.fewshot, env.fewshot_phase(phase)?) else {
        return Ok(None);
    };
    let pool = env.load_items(source).map_err(|e| env.fewshot_failure(phase, source, e))?;
    if pool.is_empty() {
        return Err(Error::env(
            &env.origin,
            format!("few-shot phase \"{}\" has no items", source.name),
        ));
    }
    Ok(Some(Fewshot::new(spec.clone(), phase.shots(Some(spec)), pool, source.name == phase.name)))
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
        Fewshot::new(spec, n, (0..pool).map(|i| item(&format!("t{i}"))).collect(), exclude_self)
    }

    fn ids(examples: &[&Item]) -> Vec<String> {
        examples.iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn first_n_takes_the_pool_in_file_order() {
        let f = fewshot(FewshotSampler::FirstN, 3, 10, false);
        assert_eq!(ids(&f.select(0, &item("q7"))), ["t0", "t1", "t2"]);
        // Another phase's item that happens to share an id is not excluded.
        assert_eq!(ids(&f.select(0, &item("t1"))), ["t0", "t1", "t2"]);
    }

    #[test]
    fn an_item_of_the_fewshot_phase_never_sees_itself() {
        let f = fewshot(FewshotSampler::FirstN, 3, 10, true);
        assert_eq!(ids(&f.select(0, &item("t1"))), ["t0", "t2", "t3"]);
        assert_eq!(ids(&f.select(0, &item("t5"))), ["t0", "t1", "t2"]);
        let r = fewshot(FewshotSampler::Random, 9, 10, true);
        for i in 0..10 {
            let id = format!("t{i}");
            let got = ids(&r.select(0, &item(&id)));
            assert_eq!(got.len(), 9);
            assert!(!got.contains(&id), "{id} in {got:?}");
        }
    }

    #[test]
    fn random_is_stable_distinct_and_depends_on_seed_and_item() {
        let f = fewshot(FewshotSampler::Random, 5, 50, false);
        let a = ids(&f.select(0, &item("q1")));
        // A fresh sampler (another run, or a run with --limit) draws the same.
        assert_eq!(ids(&fewshot(FewshotSampler::Random, 5, 50, false).select(0, &item("q1"))), a);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "{a:?}");
        assert_ne!(a, ["t0", "t1", "t2", "t3", "t4"], "not a random draw");
        assert_ne!(ids(&f.select(0, &item("q2"))), a, "every item gets its own draw");
        let mut other_seed = fewshot(FewshotSampler::Random, 5, 50, false);
        other_seed.spec.seed = 1235;
        assert_ne!(ids(&other_seed.select(0, &item("q1"))), a);
    }

    #[test]
    fn random_draws_of_one_item_do_not_depend_on_the_others() {
        // What --limit changes is which items are asked for, in which order: simulate it.
        let f = fewshot(FewshotSampler::Random, 4, 30, false);
        let all: Vec<Vec<String>> =
            (0..20).map(|i| ids(&f.select(0, &item(&format!("q{i}"))))).collect();
        let fresh = fewshot(FewshotSampler::Random, 4, 30, false);
        for i in (0..5).rev() {
            assert_eq!(ids(&fresh.select(0, &item(&format!("q{i}")))), all[i]);
        }
    }

    #[test]
    fn a_small_pool_gives_what_it_has() {
        let f = fewshot(FewshotSampler::Random, 5, 3, false);
        assert_eq!(f.select(0, &item("q")).len(), 3);
        let f = fewshot(FewshotSampler::FirstN, 5, 3, true);
        assert_eq!(ids(&f.select(0, &item("t0"))), ["t1", "t2"]);
    }

    /// A document as the goldens' Python writes it: `{"id": id, "text": "example id"}` for the
    /// few-shot split.
    fn doc(id: &str, fields: serde_json::Value) -> Item {
        let serde_json::Value::Object(fields) = fields else { panic!("object") };
        Item { fields, ..item(id) }
    }

    fn lm_eval(seed: u64, n: usize, pool: usize, same_split: bool) -> Fewshot {
        let mut f = fewshot(FewshotSampler::LmEval, n, 0, same_split);
        f.spec.seed = seed;
        f.pool = (0..pool)
            .map(|i| {
                doc(&i.to_string(), serde_json::json!({"id": i, "text": format!("example {i}")}))
            })
            .collect();
        f
    }

    /// A golden case: the sampler, the evaluated documents, and the pool ids Python's lm-eval
    /// replay gave each document.
    struct Case {
        name: String,
        fewshot: Fewshot,
        docs: Vec<Item>,
        want: Vec<Vec<String>>,
    }

    fn golden_cases() -> Vec<Case> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pyrandom/goldens.json");
        let goldens: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("goldens")).expect("JSON");
        goldens["lm_eval"]
            .as_array()
            .expect("lm_eval cases")
            .iter()
            .map(|c| {
                let (seed, n, pool) = (
                    c["seed"].as_u64().unwrap(),
                    c["n"].as_u64().unwrap() as usize,
                    c["pool"].as_u64().unwrap() as usize,
                );
                let same = c["same_split"].as_bool().unwrap();
                let want: Vec<Vec<String>> = c["examples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|ex| {
                        ex.as_array()
                            .unwrap()
                            .iter()
                            .map(|id| id.as_u64().unwrap().to_string())
                            .collect()
                    })
                    .collect();
                let f = lm_eval(seed, n, pool, same);
                let docs: Vec<Item> = if same {
                    f.pool[..want.len()].to_vec()
                } else {
                    (0..want.len())
                        .map(|i| {
                            doc(
                                &format!("test-{i}"),
                                serde_json::json!({"id": format!("test-{i}")}),
                            )
                        })
                        .collect()
                };
                Case { name: c["name"].as_str().unwrap().to_string(), fewshot: f, docs, want }
            })
            .collect()
    }

    #[test]
    fn lm_eval_draws_what_lm_eval_draws() {
        for Case { name, fewshot: f, docs, want } in golden_cases() {
            for (i, d) in docs.iter().enumerate() {
                assert_eq!(ids(&f.select(i, d)), want[i], "{name}: document {i}");
            }
        }
    }

    #[test]
    fn lm_eval_gives_an_item_its_full_run_examples_whatever_is_asked_first() {
        let fresh =
            |name: &str| golden_cases().into_iter().find(|c| c.name == name).unwrap().fewshot;
        for Case { name, docs, want, .. } in golden_cases() {
            // --limit 1, and a resumed run rendering its later items first.
            assert_eq!(ids(&fresh(&name).select(0, &docs[0])), want[0], "{name}: a prefix of one");
            let f = fresh(&name);
            for i in (0..docs.len()).rev() {
                assert_eq!(
                    ids(&f.select(i, &docs[i])),
                    want[i],
                    "{name}: document {i} asked in reverse"
                );
            }
            // A copy carries the draws made so far and goes on as the original would.
            let copy = f.clone();
            assert_eq!(
                ids(&copy.select(docs.len() - 1, &docs[docs.len() - 1])),
                want[docs.len() - 1]
            );
        }
    }

    #[test]
    fn lm_eval_drops_a_document_equal_to_the_item_from_any_split() {
        // lm-eval's `x != doc` compares rows: a test row copied into the train split is dropped
        // (n samples drawn from another split, so the item gets one example fewer).
        let f = lm_eval(1234, 2, 4, false);
        let want = ids(&f.select(0, &doc("q", serde_json::json!({"id": "q"}))));
        assert_eq!(want.len(), 2);
        let twin = f.pool.iter().find(|ex| ex.id == want[0]).unwrap().clone();
        let f = lm_eval(1234, 2, 4, false);
        assert_eq!(ids(&f.select(0, &Item { id: "q".into(), ..twin })), &want[1..]);
    }

    #[test]
    fn lm_eval_with_a_small_pool_gives_what_it_has() {
        let f = lm_eval(1234, 5, 3, false);
        let mut got = ids(&f.select(0, &doc("q", serde_json::json!({"id": "q"}))));
        got.sort();
        assert_eq!(got, ["0", "1", "2"]);
        let f = lm_eval(1234, 3, 3, true);
        let got = ids(&f.select(1, &f.pool[1].clone()));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(!got.contains(&"1".to_string()), "{got:?}");
    }
}

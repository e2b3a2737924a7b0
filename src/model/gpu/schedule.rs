//! The host side of the packed step's continuous batching. Sampled tokens stay on the device and
//! feed the next step there, and the host reads each step's tokens while the next step runs: it
//! learns that a sequence has finished (EOS, a stop string) one step late, after a row of it has
//! already been launched in vain. [`Scheduler`] plans every step from what it knows then: each
//! decoding sequence's next row, prompts (in chunks) in the rows left, new sequences in free
//! cache slots; and it keeps a finished sequence's slot out of use until the last step that
//! wrote it has been read, so no step ever writes a slot another sequence is using.

use std::collections::{BTreeSet, VecDeque};

/// What a row feeds the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A prompt token, known on the host.
    Prompt(u32),
    /// The token that the sequence's previous row sampled, which is on the device.
    Sampled,
}

/// One row of a step: a token of sequence `seq` at `pos` in cache slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub seq: usize,
    pub slot: usize,
    pub pos: usize,
    pub input: Input,
    /// Whether the row's next token is sampled (a prompt's last row, and every decode row).
    pub samples: bool,
    /// The tokens its sequence sampled before this row's: the counter of its draw.
    pub draw: usize,
}

struct Seq {
    id: usize,
    prompt: Vec<u32>,
    max_new: usize,
    slot: usize,
    /// Prompt tokens launched.
    fed: usize,
    /// Tokens the launched rows sample.
    launched: usize,
    /// Sampled tokens read back, up to the one that finished the sequence.
    tokens: Vec<u32>,
    /// The last step with a row of this sequence.
    last_step: usize,
}

/// See the module doc. Steps are numbered from 0 in the order they are planned; their results
/// must be handed back in that order ([`Scheduler::read`]).
pub struct Scheduler {
    step_rows: usize,
    free: BTreeSet<usize>,
    /// Slots of finished sequences, each free once the step given has been read.
    draining: Vec<(usize, usize)>,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    planned: usize,
    read: usize,
    finished: Vec<(usize, Vec<u32>)>,
}

impl Scheduler {
    /// `slots` cache slots (the most sequences at once), at most `step_rows` rows a step (at
    /// least a row for every slot, so every decoding sequence advances at every step).
    pub fn new(slots: usize, step_rows: usize) -> Self {
        assert!(slots > 0 && step_rows >= slots);
        Scheduler {
            step_rows,
            free: (0..slots).collect(),
            draining: Vec::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            planned: 0,
            read: 0,
            finished: Vec::new(),
        }
    }

    /// Queues sequence `id` (unique among those added): its prompt (at least one token) and at most `max_new` (at least
    /// one) new tokens.
    pub fn add(&mut self, id: usize, prompt: Vec<u32>, max_new: usize) {
        assert!(!prompt.is_empty() && max_new > 0);
        let seq = Seq {
            id,
            prompt,
            max_new,
            slot: 0,
            fed: 0,
            launched: 0,
            tokens: Vec::new(),
            last_step: 0,
        };
        self.waiting.push_back(seq);
    }

    /// The rows of the next step: a decode row for each sequence whose prompt is in and whose
    /// token budget the launched rows have not used up, then prompt tokens in the rows left,
    /// sequences in the order they joined; waiting sequences join while slots are free.
    pub fn plan(&mut self) -> Vec<Row> {
        let read = self.read;
        self.draining.retain(|&(slot, last)| {
            let busy = last >= read;
            if !busy {
                self.free.insert(slot);
            }
            busy
        });
        while let Some(slot) = self.free.first().copied() {
            let Some(mut seq) = self.waiting.pop_front() else { break };
            self.free.remove(&slot);
            seq.slot = slot;
            self.running.push(seq);
        }
        let (step, mut rows) = (self.planned, Vec::new());
        for seq in &mut self.running {
            if seq.fed == seq.prompt.len()
                && seq.launched < seq.max_new
                && rows.len() < self.step_rows
            {
                let pos = seq.prompt.len() + seq.launched - 1;
                rows.push(Row {
                    seq: seq.id,
                    slot: seq.slot,
                    pos,
                    input: Input::Sampled,
                    samples: true,
                    draw: seq.launched,
                });
                seq.launched += 1;
                seq.last_step = step;
            }
        }
        for seq in &mut self.running {
            while seq.fed < seq.prompt.len() && rows.len() < self.step_rows {
                let last = seq.fed + 1 == seq.prompt.len();
                let input = Input::Prompt(seq.prompt[seq.fed]);
                let (slot, pos) = (seq.slot, seq.fed);
                rows.push(Row { seq: seq.id, slot, pos, input, samples: last, draw: 0 });
                seq.fed += 1;
                seq.launched += usize::from(last);
                seq.last_step = step;
            }
        }
        if !rows.is_empty() {
            self.planned += 1;
        }
        rows
    }

    /// The tokens step `step` sampled, one per sampling row in row order (`(seq, token)`), with
    /// `stops(seq, tokens)` saying whether sequence `seq`'s tokens so far end it (EOS, a stop
    /// string).
    /// Tokens sampled after a sequence's end (rows launched before it was known) are dropped.
    pub fn read(
        &mut self,
        step: usize,
        sampled: &[(usize, u32)],
        mut stops: impl FnMut(usize, &[u32]) -> bool,
    ) {
        assert_eq!(step, self.read, "steps are read in the order they were planned");
        assert!(step < self.planned, "step {step} was not planned");
        self.read += 1;
        for &(id, token) in sampled {
            let Some(i) = self.running.iter().position(|s| s.id == id) else { continue };
            let seq = &mut self.running[i];
            seq.tokens.push(token);
            if stops(id, &seq.tokens) || seq.tokens.len() == seq.max_new {
                let seq = self.running.remove(i);
                self.draining.push((seq.slot, seq.last_step));
                self.finished.push((seq.id, seq.tokens));
            }
        }
    }

    /// Sequences finished since the last call, with their tokens (the last one the one that
    /// stopped it, if one did).
    pub fn take_finished(&mut self) -> Vec<(usize, Vec<u32>)> {
        std::mem::take(&mut self.finished)
    }

    /// Steps planned so far (the next one planned is numbered this).
    pub fn planned_steps(&self) -> usize {
        self.planned
    }

    /// Whether every sequence added has finished and been taken out of its slot.
    pub fn is_done(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }
}

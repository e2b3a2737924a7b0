//! The per-step row table the CUDA step sends up in one copy: every array the kernels read for
//! a step's rows, at a fixed offset in one buffer of 8-byte words, so the kernels' arguments are
//! addresses taken once (and graphs captured once stay valid). Plain data, tested on the CPU.

use super::reference::SampleParams;
use super::step::{DeviceRow, Feed};

/// The table's arrays, in order: 4-byte entries but for `TopP` and `Seed` (8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Array {
    /// A row's input: its prompt token, or `u32::MAX` (-1) for the token its slot sampled last.
    Input,
    Pos,
    Slot,
    /// The row each logits row (a sample or a scored target) is taken from.
    LogitRow,
    /// f32 bits.
    Temperature,
    TopK,
    /// f64 bits.
    TopP,
    Seed,
    Draw,
    /// The slot a sampled token is left in for the next step.
    SampleSlot,
    /// A scored row's target token.
    Target,
}

impl Array {
    /// Every array, in the table's order.
    pub const ALL: [Array; 11] = [
        Array::Input,
        Array::Pos,
        Array::Slot,
        Array::LogitRow,
        Array::Temperature,
        Array::TopK,
        Array::TopP,
        Array::Seed,
        Array::Draw,
        Array::SampleSlot,
        Array::Target,
    ];
}

/// Where each array of a table for `rows` rows starts, in 8-byte words.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    at: [usize; 11],
    words: usize,
}

impl Layout {
    pub fn new(rows: usize) -> Self {
        let mut at = [0; 11];
        let mut off = 0;
        for (a, array) in at.iter_mut().zip(Array::ALL) {
            *a = off;
            off += match array {
                Array::TopP | Array::Seed => rows,
                _ => rows.div_ceil(2),
            };
        }
        Layout { at, words: off }
    }

    /// The table's length in words.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Byte offset of `array` in the table.
    pub fn byte_offset(&self, array: Array) -> u64 {
        8 * self.at[array as usize] as u64
    }

    fn set32(&self, words: &mut [u64], array: Array, i: usize, v: u32) {
        // Little-endian, as host and device are: entry i is bytes 4i..4i+4 of the array.
        let (w, shift) = (self.at[array as usize] + i / 2, 32 * (i % 2));
        words[w] = (words[w] & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
    }

    /// Fills `words` for a step: `rows` padded to `padded` with inert rows (token 0, position 0,
    /// `pad_slot`), then `samples` padded to `sampling` with greedy samples of the padding rows,
    /// then `targets` (row, token) of a scoring step.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &self,
        words: &mut [u64],
        rows: &[DeviceRow],
        padded: usize,
        samples: &[(usize, SampleParams)],
        sampling: usize,
        targets: &[(usize, u32)],
        pad_slot: u32,
    ) {
        for i in 0..padded {
            let (input, pos, slot) = match rows.get(i) {
                Some(r) => {
                    let input = match r.feed {
                        Feed::Token(t) => t,
                        Feed::Sampled => u32::MAX,
                    };
                    (input, r.at.pos as u32, r.at.slot as u32)
                }
                None => (0, 0, pad_slot),
            };
            self.set32(words, Array::Input, i, input);
            self.set32(words, Array::Pos, i, pos);
            self.set32(words, Array::Slot, i, slot);
        }
        let greedy = SampleParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, draw: 0 };
        for i in 0..sampling {
            let (row, p, slot) = match samples.get(i) {
                Some(&(row, p)) => (row, p, rows[row].at.slot as u32),
                None => (i, greedy, pad_slot),
            };
            self.set32(words, Array::LogitRow, i, row as u32);
            self.set32(words, Array::Temperature, i, p.temperature.to_bits());
            self.set32(words, Array::TopK, i, p.top_k.min(i32::MAX as usize) as u32);
            words[self.at[Array::TopP as usize] + i] = p.top_p.to_bits();
            words[self.at[Array::Seed as usize] + i] = p.seed;
            self.set32(words, Array::Draw, i, p.draw.min(i32::MAX as u64) as u32);
            self.set32(words, Array::SampleSlot, i, slot);
        }
        for (i, &(row, token)) in targets.iter().enumerate() {
            self.set32(words, Array::LogitRow, i, row as u32);
            self.set32(words, Array::Target, i, token);
        }
    }
}

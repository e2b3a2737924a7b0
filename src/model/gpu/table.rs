//! The per-step row table the CUDA step sends up in one copy: every array the kernels read for
//! a step's rows, at a fixed offset in one buffer of 8-byte words, so the kernels' arguments are
//! addresses taken once (and graphs captured once stay valid). Plain data, tested on the CPU.

use super::reference::{Heads, SampleParams};
use super::step::{DeviceRow, Feed};

/// Queries (a tile's rows × the q heads of one kv head) the attention kernel holds at once
/// (kernels.cu: `ATT_Q`).
pub const ATTENTION_QUERIES: usize = 16;

/// The widest head the attention kernel takes (kernels.cu: `ATT_MAX_DIM`).
pub const ATTENTION_MAX_DIM: usize = 128;

/// Rows an attention tile takes: as many as fill its queries, one at least.
pub fn tile_rows(heads: &Heads) -> usize {
    (ATTENTION_QUERIES / (heads.q / heads.kv)).max(1)
}

/// Attention's tiles of rows in slots `slots`: the longest runs of consecutive rows of one
/// slot, at most `most` rows each (a prompt's rows share a tile, so each key and value the
/// kernel loads serves them all), as (first row, rows).
pub fn attention_tiles(slots: &[u32], most: usize) -> Vec<(u32, u32)> {
    let mut tiles: Vec<(u32, u32)> = Vec::new();
    for (i, &slot) in slots.iter().enumerate() {
        match tiles.last_mut() {
            Some((first, len)) if slots[*first as usize] == slot && (*len as usize) < most => {
                *len += 1
            }
            _ => tiles.push((i as u32, 1)),
        }
    }
    tiles
}

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
    /// Attention's tiles (see [`Layout::fill`]): a tile's first row, and its number of rows.
    TileRow,
    TileLen,
}

impl Array {
    /// Every array, in the table's order.
    pub const ALL: [Array; 13] = [
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
        Array::TileRow,
        Array::TileLen,
    ];
}

/// Where each array of a table for `rows` rows starts, in 8-byte words.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    at: [usize; Array::ALL.len()],
    words: usize,
}

impl Layout {
    pub fn new(rows: usize) -> Self {
        let mut at = [0; Array::ALL.len()];
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
    /// then `targets` (row, token) of a scoring step, then the padded rows' attention tiles
    /// ([`attention_tiles`], at most `tile_rows` rows each), the `padded` entries past the last
    /// tile empty. Returns the number of tiles.
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
        tile_rows: usize,
    ) -> usize {
        let mut slots = Vec::with_capacity(padded);
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
            slots.push(slot);
        }
        let tiles = attention_tiles(&slots, tile_rows);
        for i in 0..padded {
            let (row, len) = tiles.get(i).copied().unwrap_or((0, 0));
            self.set32(words, Array::TileRow, i, row);
            self.set32(words, Array::TileLen, i, len);
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
        tiles.len()
    }
}

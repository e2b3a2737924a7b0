//! Tokenizer plus the special-token facts generation needs (EOS ids, BOS).

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

pub struct TextTokenizer {
    inner: Tokenizer,
    eos_ids: Vec<u32>,
    bos_id: Option<u32>,
    origin: String,
}

impl TextTokenizer {
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            origin: origin.to_string(),
            message: format!("cannot read tokenizer.json: {e}"),
        })?;
        Ok(Self { inner, eos_ids: Vec::new(), bos_id: None, origin: origin.to_string() })
    }

    pub fn with_eos_ids(mut self, eos_ids: Vec<u32>) -> Self {
        self.eos_ids = eos_ids;
        self
    }

    pub fn with_bos_id(mut self, bos_id: Option<u32>) -> Self {
        self.bos_id = bos_id;
        self
    }

    /// The BOS token as transformers' `tokenizer.bos_token_id` knows it, if any.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary's string for `id` (added tokens included).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether the text of special tokens in encoded text is matched as those tokens (the
    /// default, as transformers does; llama.cpp's `parse_special`). Without, it is tokenized as
    /// any other text; tokens that are added but not special are matched either way.
    pub fn parse_special(mut self, parse: bool) -> Self {
        self.inner.set_encode_special_tokens(!parse);
        self
    }

    /// Encodes as `transformers`' `tokenizer(text)` does: with `add_special_tokens` the
    /// tokenizer's own post-processor decides whether BOS is added. Text rendered by a chat
    /// template already holds its special tokens, so it is encoded without.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| Error::Tokenizer {
            origin: self.origin.clone(),
            message: format!("cannot encode text: {e}"),
        })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes generated ids, dropping special tokens (EOS never reaches predictions).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| Error::Tokenizer {
            origin: self.origin.clone(),
            message: format!("cannot decode ids: {e}"),
        })
    }
}

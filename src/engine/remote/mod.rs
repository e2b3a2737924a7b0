//! An already-running OpenAI-compatible server as a [`Generator`] (`--model running:URL`):
//! up to `batch_size` requests in flight, each on its own worker thread, results handed to the
//! caller's `on_done` on the caller's thread as they arrive. Prompt truncation
//! (`--truncate`) and tokenization are the server's business: it sees text, not token ids.

mod client;
mod openai;
mod pool;

pub use client::{answers_models, Client};

use super::{GenOutput, GenRequest, Generator, LoglikOutput, LoglikRequest};
use crate::error::{Error, Result};
use crate::model::spec::{Endpoint, ServerOptions};
use client::RequestError;

pub struct RemoteEngine {
    client: Client,
    model: String,
    batch_size: usize,
}

impl RemoteEngine {
    /// Connects to the server; without `#MODEL` in the spec, asks it which model it serves.
    pub fn connect(endpoint: &Endpoint, batch_size: usize, opts: &ServerOptions) -> Result<Self> {
        let client = Client::new(endpoint, batch_size, opts)?;
        let model = match &endpoint.model {
            Some(m) => m.clone(),
            None => served_model(&client)?,
        };
        Ok(Self { client, model, batch_size: batch_size.max(1) })
    }

    /// `running:URL#MODEL` with the model the server was asked for: what the run record names.
    pub fn origin(&self) -> String {
        format!("{}#{}", self.client.origin, self.model)
    }

    pub fn base_url(&self) -> &str {
        self.client.base()
    }

    pub fn model_name(&self) -> &str {
        &self.model
    }

    fn error(&self, e: RequestError) -> Error {
        Error::model(&self.client.origin, e.message)
    }

    fn generate_one(&self, req: &GenRequest) -> Result<GenOutput> {
        // As the local engine does: nothing to generate is not worth a request.
        if req.params.max_new_tokens == 0 {
            return Ok(GenOutput {
                index: req.index,
                text: String::new(),
                token_ids: Vec::new(),
                tokens_in: 0,
                tokens_out: 0,
                tokens_dropped: 0,
                finish_reason: super::FinishReason::Length,
            });
        }
        let body = openai::generation_body(&self.model, req);
        let resp =
            self.client.post(openai::endpoint_path(req), &body).map_err(|e| self.error(e))?;
        openai::parse_generation(req, &resp)
            .map_err(|m| Error::model(&self.client.origin, format!("item \"{}\": {m}", req.id)))
    }

    fn score_one(&self, r: &LoglikRequest) -> Result<LoglikOutput> {
        let refused = |e: &RequestError| {
            format!(
                "{}; this one refused echo=true with logprobs: {}",
                openai::NO_PROMPT_LOGPROBS,
                e.message
            )
        };
        let resp = match self.client.post("/completions", &openai::loglik_body(&self.model, r, 0)) {
            Ok(v) => v,
            // Some servers insist on generating at least one token; that token is ignored.
            Err(e)
                if e.status.is_some_and(|s| {
                    (400..500).contains(&s) && s != 401 && s != 403 && s != 404
                }) =>
            {
                self.client
                    .post("/completions", &openai::loglik_body(&self.model, r, 1))
                    .map_err(|e| Error::model(&self.client.origin, refused(&e)))?
            }
            Err(e) => return Err(self.error(e)),
        };
        openai::parse_loglik(r, &resp).map_err(|m| {
            Error::model(
                &self.client.origin,
                format!("{}; this one: {m}", openai::NO_PROMPT_LOGPROBS),
            )
        })
    }
}

/// The one model the server serves; several need `#NAME` to pick one.
fn served_model(client: &Client) -> Result<String> {
    let resp = client.get("/models").map_err(|e| Error::model(&client.origin, e.message))?;
    let ids = openai::model_ids(&resp);
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::model(
            &client.origin,
            format!(
                "{}/models lists no model; name one with running:URL#MODEL_NAME",
                client.base()
            ),
        )),
        many => Err(Error::model(
            &client.origin,
            format!(
                "the server serves {} models ({}); pick one with running:URL#MODEL_NAME",
                many.len(),
                many.join(", ")
            ),
        )),
    }
}

impl Generator for RemoteEngine {
    fn generate(
        &mut self,
        requests: Vec<GenRequest>,
        on_done: &mut dyn FnMut(GenOutput) -> Result<()>,
    ) -> Result<()> {
        let this = &*self;
        pool::run(requests, self.batch_size, |req| this.generate_one(req), on_done)
    }

    fn loglikelihood(
        &mut self,
        requests: Vec<LoglikRequest>,
        on_done: &mut dyn FnMut(LoglikOutput) -> Result<()>,
    ) -> Result<()> {
        let this = &*self;
        pool::run(requests, self.batch_size, |r| this.score_one(r), on_done)
    }
}

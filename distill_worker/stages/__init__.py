"""The two distillation stages and what they share.

- `losses`: pure loss functions (shapes in their docstrings) and `DynamicLossWeights`.
- `structural`: copy the BERT encoder teacher's embeddings and first layers into the student.
- `training`: checkpoints (safetensors + JSON, atomic), collate functions, the shared step loop,
  the JSON-lines metrics log and the progress bar.
- `encoder_stage`: stage 1, the encoder (feature MSE, intent logit KD, task CE).
- `decoder_stage`: stage 2, the decoder with the reward head (sequence and top-k token KD,
  reward BCE, optional KTO-style objective).
- `evaluate`: intent metrics, chrF, ROUGE-L, prediction/generation and latency helpers.

Each stage recipe has the same shape: `setup()`, `train(max_steps)`, `save_checkpoint()`,
`cleanup()`; constructing one on a checkpoint folder that already holds a checkpoint resumes it.
"""

"""The bundle runtime: run an exported student bundle without torch.

`onnx_runner.OnnxStudent` loads a verified bundle into ONNX Runtime sessions (CPU, or CUDA on
request; TensorRT engines through `tensorrt`, imported only when asked for) and answers (intent,
reply, reward, handoff) with a hand-written greedy loop over the KV cache.
`running_batch.RunningBatch` holds the rows one model is generating for the batcher, their
caches merged (left-padded) so that rows that started at different steps decode together.
`serving.ReplyEngine` holds the deployed `OnnxStudent` for the API and swaps it atomically.
"""

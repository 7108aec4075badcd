"""The bundle runtime: run an exported student bundle without torch.

`onnx_runner.OnnxStudent` loads a verified bundle into ONNX Runtime CPU sessions and answers
(intent, reply, reward, handoff) with a hand-written greedy loop over the KV cache.
`serving.ReplyEngine` holds the deployed `OnnxStudent` for the API and swaps it atomically.
"""

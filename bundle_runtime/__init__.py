"""The torch-free bundle runtime: everything that reads or runs an exported model bundle.

Serving (`chat_api`), the loop's gate and evaluation, and export parity (`distill_worker`) all
run a bundle through this package, so what is measured before promotion is what serves.

    manifest.py       the bundle format and its checks (checksums, parity verdict)
    source.py         the encoder's input text of a conversation (`format_source`)
    vocab.py          the student decoder's vocabulary and its mapping to the responder's ids
    onnx_student.py   `OnnxStudent`: ONNX Runtime sessions, the decode loop, intents, reward,
                      handoff decisions
    running_batch.py  the continuous batcher's decode state over `OnnxStudent`
    tensorrt.py       TensorRT FP16 engines behind the session interface (loaded on request)
    intents.py        intent metrics of a bundle on labelled rows
    deploy.py         copy a bundle into the artifact store, register it, move an alias

Imports: numpy, onnxruntime, tokenizers and `feedback` (deploy.py only), never torch,
`chat_api` or `distill_worker` (tests/test_layers.py checks it).
"""

"""The dynamic batcher: `scheduler` (pure decisions) and `loop` (the asyncio shell that runs
model steps in one worker thread)."""

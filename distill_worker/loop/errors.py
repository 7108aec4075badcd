"""Why a run stops before it succeeds.

RunStop
├── RetryableRunError   a passing condition (teacher down or timing out): retry with backoff
├── PermanentRunError   the run cannot succeed as configured: it is marked failed, with why
├── RunCancelled        an operator cancelled it: stop at this checkpoint, leave it cancelled
└── LeaseLost           another delivery of the task took the run over: stop, touch nothing
"""

from __future__ import annotations


class RunStop(Exception):
    """Base of every way a run step stops the run."""


class RetryableRunError(RunStop):
    pass


class PermanentRunError(RunStop):
    pass


class RunCancelled(RunStop):
    pass


class LeaseLost(RunStop):
    pass

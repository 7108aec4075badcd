"""The source encoder's text: how a conversation becomes the encoder's input string.

Part of the bundle contract (the manifest's `context_turns`): training builds its inputs with
it, and serving, evaluation and the gate read conversations through it.
"""

from __future__ import annotations


def format_source(turns: list[tuple[str, str]], max_turns: int) -> str:
    """The encoder's input text for a conversation: the last `max_turns` turns, oldest first,
    each as `role: text`, joined by ` | `. Training and serving both build inputs with this."""
    recent = turns[-max_turns:] if max_turns > 0 else turns[-1:]
    return " | ".join(f"{role}: {text.strip()}" for role, text in recent)

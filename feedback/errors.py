"""Errors of the feedback store. Every message says what to do about it.

FeedbackError
├── NotFound            the thing asked for does not exist
├── Conflict            the request contradicts the current state
├── InvalidInput        a value is out of range or malformed
├── AuthError           credentials missing, wrong, expired or revoked
├── NotPermitted        valid credentials, not allowed to act on this thing
└── SchemaOutOfDate     the database is not at the code's migration revision
"""

from __future__ import annotations


class FeedbackError(Exception):
    """Base of every expected error in the feedback store."""

    code = "feedback_error"


class NotFound(FeedbackError):
    code = "not_found"


class Conflict(FeedbackError):
    code = "conflict"


class InvalidInput(FeedbackError):
    code = "validation_error"  # the same code the API gives schema validation failures


class AuthError(FeedbackError):
    code = "unauthorized"


class NotPermitted(FeedbackError):
    code = "forbidden"


class SchemaOutOfDate(FeedbackError):
    """The database's migration revision is not the code's (`feedback.migrate.require_head`)."""

    code = "schema_out_of_date"
    action = "run `chatdistill db upgrade` first"

    def __init__(self, current: str | None, head: str | None) -> None:
        self.current, self.head = current, head
        self.problem = (
            f"the database is at revision {current or 'none (empty)'}, the code needs {head}"
        )
        super().__init__(f"{self.problem}; {self.action}")

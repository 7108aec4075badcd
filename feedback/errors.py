"""Errors of the feedback store. Every message says what to do about it.

FeedbackError
├── NotFound            the thing asked for does not exist
├── Conflict            the request contradicts the current state
├── InvalidInput        a value is out of range or malformed
└── AuthError           credentials missing, wrong, expired or revoked
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

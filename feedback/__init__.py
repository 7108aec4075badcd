"""The feedback store: settings, database access, ORM models, repositories, PII redaction.

This is the base layer of the platform. It imports neither `chat_api` nor `distill_worker`.
"""

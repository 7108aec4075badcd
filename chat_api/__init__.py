"""The chat API: widget endpoints, operator API, health and metrics, served by FastAPI.

Imports `feedback` (the store) and, from the distillation issue on, the model bundle format;
never Celery tasks and never torch on the serving path.
"""

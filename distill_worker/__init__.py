"""The distillation worker: Celery app and tasks, teachers, data building, the student model,
the two stages, evaluation, export and promotion. Imports `feedback`; never `chat_api`."""

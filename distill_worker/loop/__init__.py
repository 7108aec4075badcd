"""The continual loop on the worker side: the steps of one run (snapshot, train, evaluate and
gate, register, promote), their checkpoints and lease, the gate, and the monitor tick's
dispatching. Celery is only the transport: `distill_worker.tasks` calls into here."""

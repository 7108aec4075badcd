"""HTTP routes, one module per audience: widget, operator, admin, OpenAI-compatible, health."""

"""All SQL of the platform lives here. Repositories flush but never commit: the caller's unit of
work (the web request dependency, `feedback.db.session_scope`) commits once."""

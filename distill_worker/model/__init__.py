"""The student: an encoder-decoder transformer with an intent head and a reward head."""

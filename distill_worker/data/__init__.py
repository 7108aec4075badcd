"""Training data: loading labelled files, the demo corpus, examples for the two stages."""

"""A model family we train ourselves, offline (`ie-ray train-family`): recipe, text + tokenizer, training loop,
and the registry that lets sweep configs name members as `family-<name>-<size>`."""

"""Training: the step plan, the step, one loop for M >= 1 models, checkpoints
(docs/architecture.md)."""

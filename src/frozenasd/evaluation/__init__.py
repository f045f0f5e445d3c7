"""DCASE Task 2 metrics, computed exactly as the official evaluator does."""

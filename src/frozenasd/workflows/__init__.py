"""Workflows: the steps of a run (and later of fit, score and the demo) put in order, nothing more."""

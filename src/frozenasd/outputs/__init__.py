"""The files frozenasd writes: every name in :mod:`frozenasd.outputs.names`, one writer per format."""

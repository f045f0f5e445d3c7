"""A fitted model that scores recordings: :class:`ScoringModel` (fit, save, load, score)."""

from frozenasd.scoring.model import Scored, ScoringModel

__all__ = ["Scored", "ScoringModel"]

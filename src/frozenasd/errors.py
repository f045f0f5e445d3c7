"""Exceptions raised for bad input; each message names the file and what is wrong."""

from __future__ import annotations


class FrozenASDError(Exception):
    """Base class of every error the package raises on purpose."""


class AudioError(FrozenASDError):
    """An audio file cannot be read or is unusable (empty, truncated, too short)."""


class LayoutError(FrozenASDError):
    """A dataset folder or file name does not follow the DCASE layout."""


class ModelError(FrozenASDError):
    """A model file (ONNX or checkpoint) is missing, unreadable or does not fit."""


class SettingsError(FrozenASDError, ValueError):
    """Settings that do not go together or are out of range (e.g. two threshold choices)."""

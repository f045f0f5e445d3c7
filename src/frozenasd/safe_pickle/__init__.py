"""Read ``torch.save`` zip checkpoints as data, never as code, and without PyTorch.

A ``torch.save`` file is a zip archive holding ``<prefix>/data.pkl`` (a pickle) and one record
``<prefix>/data/<key>`` per tensor storage. The pickle is read by :class:`RestrictedUnpickler`, which
resolves only the few globals such files contain, each to a function that builds data:

- tensors (``torch._utils._rebuild_tensor_v2`` and friends, the ``torch.*Storage`` types) become
  :class:`StoredTensor` records whose bytes are read from the archive only when asked for
  (:mod:`.torch_zip`);
- ``collections.OrderedDict`` / ``defaultdict``, plain builtin types, numpy scalars, dtypes and arrays;
- classes of ``omegaconf``, ``fairseq``, ``hydra``, ``typing`` and ``argparse.Namespace`` become inert
  :class:`InertObject` stand-ins holding their pickled state; :func:`to_plain` turns them (a pickled
  omegaconf ``DictConfig`` included) back into dicts and lists (:mod:`.pickle_globals`).

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises
:class:`UnsafeCheckpointError` before anything is called. What a file may make the reader do is
bounded by budgets: ``MAX_PICKLE_BYTES`` and ``MAX_PICKLE_OPS`` for ``data.pkl`` (checked before it is
unpickled), ``MAX_ITEMS``, ``MAX_DEPTH`` and ``MAX_NODES`` for what the allowed calls build and walk.

Both readers of ``torch.save`` files use this package: the EAT checkpoint loader
(:mod:`frozenasd.backbones.eat_export.checkpoint`) and the aiSFX backbone builder
(:mod:`frozenasd.backbones.aisfx_onnx`). It needs numpy only, never PyTorch. This module is the public
entry point; it gathers the names of the two modules that implement it.
"""

from __future__ import annotations

from frozenasd.safe_pickle.pickle_globals import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_NODES,
    MAX_PICKLE_BYTES,
    MAX_PICKLE_OPS,
    InertObject,
    UnsafeCheckpointError,
    to_plain,
)
from frozenasd.safe_pickle.torch_zip import (
    RestrictedUnpickler,
    StoredTensor,
    TorchArchive,
    load_torch_file,
    map_tensors,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_NODES",
    "MAX_PICKLE_BYTES",
    "MAX_PICKLE_OPS",
    "InertObject",
    "RestrictedUnpickler",
    "StoredTensor",
    "TorchArchive",
    "UnsafeCheckpointError",
    "load_torch_file",
    "map_tensors",
    "to_plain",
]

"""The self-description an exported ONNX encoder carries in its metadata.

An export writes one metadata entry, key ``frozenasd``, whose value is a JSON document:

```
{"schema": 1,
 "model": {"name": "EAT-base_epoch30_pt", "family": "eat", "size": "base", "embed_dim": 768,
           "source_file": "EAT-base_epoch30_pt.pt", "source_sha256": "…"},
 "frontend": {"name": "eat_fbank", "sample_rate": 16000, "num_mel_bins": 128,
              "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "window": "hanning", "dither": 0.0,
              "norm_mean": -4.268, "norm_std": 4.569, "frame_multiple": 16, "max_frames": 12288},
 "input": {"name": "input", "layout": "B3FT"},
 "outputs": {"emb": "patch tokens (batch, patches, dim)", "cls": "CLS token (batch, dim)"},
 "token_layout": {"emb": {"prefix_tokens": 0}, "layer_3": {"prefix_tokens": 1}}}
```

``input.layout`` is ``B3FT`` (batch, 3, mel, time; the mel channel replicated, the seed's interface)
or ``B1TF`` (batch, 1, time, mel; EAT's native layout). ``token_layout`` says, per token output, how
many tokens precede the patch tokens (a block output keeps the CLS token first); patch tokens are
time-major (index = t · frequency patches + f). A file without the entry is still usable: the layout
is then inferred from the input's shape and outputs are taken to hold patch tokens only.

The layout names are defined with the frontends (:mod:`frozenasd.embed.frontends.base`), EAT's frontend
parameters with its frontend (:mod:`frozenasd.embed.frontends.eat`): encoders depend on frontends, never
the other way round.
"""

from __future__ import annotations

import json
from typing import Any

METADATA_KEY = "frozenasd"
SCHEMA_VERSION = 1


def encode_metadata(description: dict[str, Any]) -> dict[str, str]:
    """Return the ONNX ``metadata_props`` entries (string to string) for ``description``."""
    doc = {"schema": SCHEMA_VERSION, **description}
    return {METADATA_KEY: json.dumps(doc, sort_keys=True)}


def write_metadata(model: Any, description: dict[str, Any]) -> None:
    """Set ``description`` in the ``metadata_props`` of the ONNX ``model`` (in place), replacing the
    entries of the same keys and keeping the others."""
    props = encode_metadata(description)
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def decode_metadata(props: dict[str, str]) -> dict[str, Any] | None:
    """Parse the description from ONNX metadata entries; ``None`` when the file has none."""
    raw = props.get(METADATA_KEY)
    if raw is None:
        return None
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"unsupported {METADATA_KEY!r} metadata schema: {doc.get('schema')!r}")
    return doc

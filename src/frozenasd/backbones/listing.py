"""What ``frozenasd backbones`` and ``frozenasd download --list`` print: the backbones, their state,
the variants (``-d<K>``, ``-int8``) present here."""

from __future__ import annotations

from pathlib import Path

from frozenasd.backbones.registry import BACKBONES, Backbone, parse_variant
from frozenasd.errors import ModelError


def found_variants(backbone: Backbone) -> list[tuple[str, Path]]:
    """The variants of ``backbone`` present here (exported EAT variants, prepared int8 files)."""
    from frozenasd import backbones as here  # looked up there, where the tests replace them

    found: list[tuple[str, Path]] = []
    if backbone.source == "hub":
        stems = {backbone.name: "-", backbone.name.replace("-", "_"): "_"}
        seen: set[str] = set()
        for folder in here._search_dirs():
            for stem, sep in stems.items():
                for path in sorted(folder.glob(f"{stem}{sep}*.onnx")):
                    tail = path.name[len(stem) : -len(".onnx")].replace("_", "-")
                    tail = tail[: -len("-export")] if tail.endswith("-export") else tail
                    name = backbone.name + tail
                    try:
                        variant = parse_variant(name)
                    except ModelError:
                        continue
                    if variant.backbone is backbone and not variant.plain and name not in seen:
                        seen.add(name)
                        found.append((name, path))
    elif backbone.source == "package":
        version = here._installed_version(backbone.package) if backbone.package else None
        if version is not None:
            prepared = here.cache_dir() / here._onnx_name(backbone, version, int8=True)
            if prepared.is_file():
                found.append((f"{backbone.name}-int8", prepared))
    return found


def _origin(backbone: Backbone) -> str:
    """Where a backbone's weights come from, in a few words."""
    if backbone.source == "hub":
        return f"Hugging Face hub {backbone.repo_id}, exported to ONNX (fairseq: {backbone.fairseq_file})"
    if backbone.source == "package":
        return f"package {backbone.package}=={backbone.version} ({backbone.weights}), prepared to ONNX"
    return "built in, prepared to ONNX on first use"


def format_backbones_table() -> str:
    """A plain-text table of the backbones and their state, for ``frozenasd backbones``."""
    from frozenasd.backbones import status

    states = status()
    header = ("backbone", "dim", "rate", "licence", "ready", "install / obtain")
    rows = [
        (
            b.name,
            str(b.embed_dim),
            f"{b.sample_rate // 1000 if b.sample_rate % 1000 == 0 else b.sample_rate / 1000} kHz",
            b.license.split(" ")[0] + ("*" if " " in b.license else ""),
            "yes" if states[b.name].ready else "no",
            b.install,
        )
        for b in BACKBONES.values()
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for b in BACKBONES.values():
        lines.append(f"{b.name}: {b.description}")
        lines.append(f"    from: {_origin(b)}")
        lines.append(f"    state: {states[b.name].detail}")
        if not b.builtin:
            present = ", ".join(f"{name} ({path})" for name, path in found_variants(b))
            how, name = (
                ("--depth K, --int8", f"{b.name}-dK-int8")
                if b.source == "hub"
                else ("--int8", f"{b.name}-int8")
            )
            lines.append(f"    variants ({how}; --model {name}): {present or 'none here'}")
        lines.append(f"    licence: {b.license}; {b.attribution}")
    return "\n".join(lines)


def format_models_list() -> str:
    """One line per backbone, for ``frozenasd download --list``: its name, whether ready, its origin."""
    from frozenasd.backbones import status

    states = status()
    width = max(len(name) for name in BACKBONES)
    return "".join(
        f"  {b.name:<{width}}  {'ready' if states[b.name].ready else 'not ready':<9}  {_origin(b)}\n"
        for b in BACKBONES.values()
    )

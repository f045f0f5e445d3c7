"""Fetch published EAT weights from the Hugging Face hub, check them, and export them to ONNX.

Which repos hold EAT models is the backbone registry's business (:mod:`frozenasd.backbones.registry`,
``frozenasd download NAME``); the functions here take a repo id.

Only ``config.json`` and one weights file (``model.safetensors``, else ``pytorch_model.bin``) are
fetched; the repos' Python files (``modeling_eat.py`` …) are never downloaded or run, and a
``pytorch_model.bin`` is read by the restricted loader of :mod:`frozenasd.backbones.eat_export.checkpoint`.

Downloads go through ``huggingface_hub`` into its cache (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``, read when the function is called), from ``HF_ENDPOINT`` when set (a
mirror), so a second call reuses the files; once cached, they are used even when the hub cannot be
reached. ``huggingface_hub`` itself only checks that a file arrives with the advertised size. On top
of that every call checks:

- a large-file (LFS) download against its sha256, which the hub sends as the file's ETag and the
  cache names the file by;
- ``config.json`` parses, and its dimensions match the weights;
- the weights load as an EAT checkpoint (the keys and shapes the encoder needs).

A file that fails a check is deleted from the cache, so running the command again downloads it anew.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from frozenasd.backbones.eat_export.checkpoint import HF_WEIGHT_FILES
from frozenasd.errors import ModelError
from frozenasd.hashing import file_sha256

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
CONFIG_FILE = "config.json"
EAT_GITHUB = "https://github.com/cwx-worst-one/EAT"


_SHA256 = re.compile(r"[0-9a-f]{64}")


def hub_endpoint(endpoint: str | None = None) -> str:
    """``endpoint``, else ``HF_ENDPOINT`` as set now, else the public hub."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else the hub cache the environment names now (the precedence huggingface_hub uses)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.path.expandvars(os.environ[key])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hub"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport-level exception types of the HTTP clients huggingface_hub may use."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _unreachable(endpoint: str, repo_id: str, what: str, error: BaseException) -> ModelError:
    if endpoint == DEFAULT_ENDPOINT:
        source = "the Hugging Face hub"
    elif hub_endpoint() == endpoint:
        source = "the hub mirror set by HF_ENDPOINT"
    else:
        source = "the hub endpoint"
    return ModelError(
        f"could not {what} {repo_id}: {source} at {endpoint} could not be reached "
        f"({type(error).__name__}: {_brief(error)}). Check the network connection (or point "
        f"HF_ENDPOINT to a reachable mirror) and run again, or download a fairseq checkpoint by hand "
        f"(links in the EAT README, {EAT_GITHUB}) and pass its path to `frozenasd export`."
    )


# ---------------------------------------------------------------------- download
def download_weights(
    repo_id: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download (or find in the cache) and check the EAT weights of hub repo ``repo_id``; return their path.

    The path is the weights file (``model.safetensors`` or ``pytorch_model.bin``) in the cache's
    snapshot folder, beside its ``config.json``. ``revision`` is a branch, tag or commit (default
    ``main``); ``endpoint`` overrides ``HF_ENDPOINT``. Raises :class:`ModelError` for an unreachable
    hub with nothing cached, or a file that fails its checks (the file is then deleted from the cache).
    """
    base = hub_endpoint(endpoint)
    cache = hub_cache_dir(cache_dir)
    rev = revision or DEFAULT_REVISION

    listed = _list_repo(repo_id, rev, base)
    if isinstance(listed, BaseException):
        config, weights = _from_cache(repo_id, rev, cache, base, listed)
    else:
        name = next((f for f in HF_WEIGHT_FILES if f in listed), None)
        if name is None or CONFIG_FILE not in listed:
            raise ModelError(
                f"{repo_id}@{rev} on {base} does not hold the expected files ({CONFIG_FILE} and one "
                f"of {', '.join(HF_WEIGHT_FILES)}); it holds: {', '.join(sorted(listed)) or 'nothing'}"
            )
        config = _fetch(repo_id, CONFIG_FILE, rev, cache, base)
        weights = _fetch(repo_id, name, rev, cache, base)

    _check_sha256(config)
    _check_sha256(weights)
    _check_checkpoint(weights, _read_config(config))
    return weights


def _list_repo(repo_id: str, revision: str, endpoint: str) -> set[str] | BaseException:
    """The file names of the repo at ``revision``; the network error when the hub cannot be reached."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = HfApi(endpoint=endpoint).model_info(
            repo_id, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT
        )
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise ModelError(
            f"the repo {repo_id} was not found on {endpoint} (or needs a login): {_brief(error)}"
        ) from error
    except RevisionNotFoundError as error:
        raise ModelError(f"{repo_id} on {endpoint} has no revision {revision!r}") from error
    except OfflineModeIsEnabled as error:
        return error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status is not None and status < 500:
            raise ModelError(f"{endpoint} refused to describe {repo_id}: {_brief(error)}") from error
        return error
    except _network_errors() as error:
        return error
    return {s.rfilename for s in info.siblings or ()}


def _from_cache(
    repo_id: str, revision: str, cache: Path, endpoint: str, error: BaseException
) -> tuple[Path, Path]:
    """The cached config and weights of ``repo_id`` when the hub cannot be reached."""
    from huggingface_hub import hf_hub_download

    def cached(name: str) -> Path | None:
        try:
            return Path(
                hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, local_files_only=True)
            )
        except (FileNotFoundError, OSError, ValueError):
            return None

    config = cached(CONFIG_FILE)
    for name in HF_WEIGHT_FILES:
        weights = cached(name)
        if config is not None and weights is not None:
            logger.warning("%s could not be reached; using the cached %s", endpoint, weights)
            return config, weights
    raise _unreachable(endpoint, repo_id, "download", error)


def _fetch(repo_id: str, filename: str, revision: str, cache: Path, endpoint: str) -> Path:
    """One file through huggingface_hub's cache, with its errors turned into clear ones."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    where = f"{endpoint}/{repo_id} ({filename}@{revision})"
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, endpoint=endpoint))
    except LocalEntryNotFoundError as error:
        raise _unreachable(endpoint, repo_id, f"download {filename} of", error.__cause__ or error) from error
    except EntryNotFoundError as error:
        raise ModelError(f"{where} does not exist") from error
    except HfHubHTTPError as error:
        raise ModelError(f"downloading {where} failed: {_brief(error)}") from error
    except _network_errors() as error:
        raise _unreachable(endpoint, repo_id, f"download {filename} of", error) from error
    except OSError as error:
        # huggingface_hub's size check ("Consistency check failed: …"), or a full disk.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"downloading {where} failed: {reason} The partial file was discarded; run the command again."
        ) from error


def _brief(error: BaseException) -> str:
    text = str(error).strip()
    return " ".join(line.strip() for line in text.splitlines()[:3] if line.strip()) or type(error).__name__


# ------------------------------------------------------------------------ checks
def _discard(path: Path, problem: str) -> ModelError:
    """Delete a cached file (its blob and its snapshot entry); the error to raise about it."""
    blob = path.resolve()
    for p in {path, blob}:
        try:
            p.unlink(missing_ok=True)
        except OSError as error:  # read-only cache: say so, still raise the real problem
            logger.warning("could not delete %s: %s", p, error)
    return ModelError(
        f"the downloaded {path} is damaged: {problem}. The file was deleted from the cache; "
        "run the command again to download it anew."
    )


def _check_sha256(path: Path) -> None:
    """For an LFS file the cache names the blob by the sha256 the hub advertised; compare."""
    expected = path.resolve().name
    if _SHA256.fullmatch(expected) is None:
        return  # a small file kept in git: named by its git sha1, which the hub does not promise
    actual = file_sha256(path)
    if actual != expected:
        raise _discard(path, f"its sha256 is {actual}, the hub announced {expected}")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _discard(path, f"it is not valid JSON ({error})") from error
    if not isinstance(config, dict):
        raise _discard(path, "it is not a JSON object")
    model_type = config.get("model_type", "eat")
    if model_type != "eat":
        raise _discard(path, f"model_type is {model_type!r}, not 'eat'")
    for key in ("embed_dim", "depth", "num_heads"):
        if key in config and not (isinstance(config[key], int) and config[key] > 0):
            raise _discard(path, f"{key} is {config[key]!r}, not a positive integer")
    dim, heads = config.get("embed_dim"), config.get("num_heads")
    if dim is not None and heads is not None and dim % heads:
        raise _discard(path, f"num_heads {heads} does not divide embed_dim {dim}")
    return config


def _check_checkpoint(weights: Path, config: dict[str, Any]) -> None:
    """The weights load as an EAT checkpoint whose dimensions agree with ``config.json``.

    With PyTorch installed every tensor is read; without it, the file's keys and shapes are checked.
    """
    from frozenasd.backbones.eat_export.checkpoint import inspect_eat_checkpoint, load_eat_checkpoint

    try:
        import torch  # noqa: F401 - only probing whether the full load is possible
    except ImportError:
        has_torch = False
    else:
        has_torch = True
    try:
        found = load_eat_checkpoint(weights)[1] if has_torch else inspect_eat_checkpoint(weights)[0]
    except MemoryError:
        raise
    except ModelError as error:
        raise _discard(weights, str(error)) from error
    except Exception as error:  # noqa: BLE001 - any failure to parse the file is damage
        raise _discard(weights, f"{type(error).__name__}: {error}") from error
    for key in ("embed_dim", "depth", "num_heads"):
        value = getattr(found, key)
        if key in config and config[key] != value:
            raise _discard(weights, f"it holds {key}={value} while {CONFIG_FILE} says {config[key]}")


# ------------------------------------------------------------------------ export
def download_and_export(
    repo_id: str,
    output: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    use_ema: bool = False,
    depth: int | None = None,
    int8: bool = False,
) -> Path:
    """Download and check the EAT weights of hub repo ``repo_id``, then export them to ONNX at ``output``
    (the first ``depth`` blocks, int8 with ``int8``: see ``export_onnx``)."""
    from frozenasd.backbones.eat_export.export import export_onnx

    weights = download_weights(repo_id, cache_dir=cache_dir, revision=revision, endpoint=endpoint)
    return export_onnx(weights, Path(output), use_ema=use_ema, depth=depth, int8=int8)

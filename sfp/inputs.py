"""Reading the command line's inputs: tensors (.npy/.npz) and JSON, with one-line errors.

Each reader raises :class:`sfp.errors.CliError` naming the file and the
problem; :func:`output_path` checks an output's directory before any work.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from sfp.errors import CliError, first_line

__all__ = ["source_of", "load_npy", "load_tensors", "load_json", "output_path"]


def source_of(x: np.ndarray, requested: str | None) -> tuple[np.ndarray, str]:
    """The array as the source format's values and that format's name.

    float32 arrays may be asked for as bf16 (or fp16): they are rounded to
    nearest even first, the cast an accelerator makes on its way to memory.
    """
    kind, size = x.dtype.kind, x.dtype.itemsize
    name = x.dtype.name
    natural = {("f", 4): "fp32", ("u", 4): "fp32", ("f", 2): "fp16" if name == "float16" else "bf16",
               ("V", 2): "bf16", ("u", 2): "bf16"}.get((kind, size))
    if name == "bfloat16":
        natural = "bf16"
    if natural is None:
        raise CliError(f"unsupported dtype {x.dtype}: expected float32, bfloat16, float16, or uint16/uint32 bit patterns")
    if requested is None or requested == natural or (kind == "u" and size == 2 and requested in ("bf16", "fp16")):
        return x, requested or natural
    if kind == "f" and size == 4 and requested in ("bf16", "fp16"):
        if requested == "bf16":
            import ml_dtypes
            return x.astype(ml_dtypes.bfloat16), "bf16"
        return x.astype(np.float16), "fp16"
    raise CliError(f"dtype {x.dtype} cannot be read as --source {requested}")


def load_npy(path: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except (ValueError, OSError, EOFError) as exc:
        raise CliError(f"{path}: not a readable .npy file ({first_line(exc)})")
    if isinstance(x, np.lib.npyio.NpzFile):
        raise CliError(f"{path}: is an .npz archive; encode takes one .npy tensor")
    return x


def load_tensors(path: str) -> dict[str, np.ndarray]:
    """One .npy, or every array of an .npz, by name."""
    try:
        obj = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CliError(f"{path}: not a readable .npy/.npz file ({first_line(exc)})")
    if isinstance(obj, np.lib.npyio.NpzFile):
        with obj:
            try:
                return {k: obj[k] for k in obj.files}
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                raise CliError(f"{path}: corrupted .npz ({first_line(exc)})")
    return {os.path.basename(path): obj}


def load_json(path: str):
    """The JSON document in ``path``; CliError naming the problem."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file")
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})")


def output_path(path: str) -> str:
    """``path`` if its directory exists (CliError otherwise): checked before the work, not after."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"{path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise CliError(f"{path}: is a directory")
    return path

"""Writing a file atomically: a failed or interrupted run leaves no partial file.

The one helper for every output of the project (the CLI's ``.sfpc``/``.npy``,
synthesis reports, training schedules and dumps): the content goes to a
temporary file in the destination's directory (same file system, so the
final rename is atomic), which is renamed over ``path`` only once complete.
Stdlib only, so ``sfp.synth``, ``sfp.train`` and the CLI can all use it.
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Callable

__all__ = ["write_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path, write: Callable[[IO[bytes]], object], *, durable: bool = False) -> None:
    """Call ``write(f)`` on a binary temporary file next to ``path``, then rename it to ``path``.

    The file gets the usual permissions (0666 less the umask; ``mkstemp``
    alone would leave 0600).  ``durable=True`` also fsyncs before the rename,
    for caches that must survive a crash.  If ``write`` raises, the temporary
    file is removed and ``path`` is untouched.  A missing directory raises
    ``FileNotFoundError``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str, *, durable: bool = False) -> None:
    """:func:`write_atomic` for a text (UTF-8)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda f: f.write(data), durable=durable)

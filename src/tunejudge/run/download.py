"""Download one file, bounded in time, checked, written atomically; say how to place it by hand."""

from __future__ import annotations

import hashlib
import logging
import urllib.request

from ..errors import TunejudgeError
from ..io import atomic_path

log = logging.getLogger(__name__)


def fetch(url: str, dest, *, sha256: str | None = None, timeout: float = 60.0) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            h = hashlib.sha256()
            with open(tmp, "wb") as f:
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if sha256 and h.hexdigest() != sha256:
                raise TunejudgeError(
                    f"{url}: sha256 {h.hexdigest()} is not the pinned {sha256}: the file changed upstream or "
                    f"arrived damaged; nothing was kept. Check the URL, or pin the new file's sha256 in the "
                    f"source's download.sha256 if it is the one you want")
    except (OSError, ValueError) as e:
        raise TunejudgeError(
            f"could not download {url} ({type(e).__name__}: {e}). Without network, download it elsewhere "
            f"and place it at {dest}, or point the source's loader.data_files at a local copy."
        ) from None
    log.info("downloaded %s -> %s", url, dest)

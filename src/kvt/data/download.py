"""A verified download: the bytes of `url` land at `dest` only if their digest is the
published one (SHA-256, or MD5 where the dataset's authors publish only that).

Every official dataset kvt reads (CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST) downloads
through it into the Keras cache, under Keras' names, so that Keras and kvt share one copy.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from kvt.errors import DataError

# What finding a dataset returns: the form it was found in ("tar", "dir", ...) and where.
Found = tuple[str, Path]


def fetch(url: str, dest: Path, digest: str, what: str, algorithm: str = "sha256",
          chunk: int = 1 << 20) -> Path:
    """Downloads `url` to `dest` (atomically) and checks its `algorithm` digest; `what`
    names the dataset in messages."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    print(f"kvt: downloading {what} from {url} to {dest}", file=sys.stderr)
    h = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while block := response.read(chunk):
                h.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {what} from {url} ({e}): download {dest.name} "
                        f"yourself and pass --data-dir to the folder holding it") from None
    if h.hexdigest() != digest:
        tmp.unlink(missing_ok=True)
        name = {"sha256": "SHA-256", "md5": "MD5"}.get(algorithm, algorithm.upper())
        raise DataError(f"the download from {url} has {name} {h.hexdigest()}, "
                        f"expected {digest}: the file is corrupt or not {what}; try again or "
                        f"pass --data-dir")
    os.replace(tmp, dest)
    return dest


def locate(title: str, data_dir: str | Path | None, find: Callable[[Path], Found | None],
           layouts: str, cache: Path, find_cached: Callable[[Path], Found | None],
           download: Callable[[], Found] | None, contents: str = "data") -> Found:
    """Where the official dataset `title` lies, in the order every one of them is looked
    for: `data_dir` (or KVT_DATA_DIR), then the Keras `cache`, then `download()` (a
    verified download; None: refused). `layouts` says what --data-dir may point at."""
    explicit = data_dir or os.environ.get("KVT_DATA_DIR")
    if explicit:
        path = Path(explicit).expanduser()
        found = find(path)
        if found is None:
            what = "does not exist" if not path.exists() else f"holds no {title} {contents}"
            raise DataError(f"{path} {what}: point --data-dir at a folder with {layouts} (or "
                            f"leave it out to use the Keras cache or download)")
        return found
    found = find_cached(cache) if cache.is_dir() else None
    if found is not None:
        return found
    if download is None:
        raise DataError(f"{title} not found in {cache}: pass --data-dir DIR")
    return download()

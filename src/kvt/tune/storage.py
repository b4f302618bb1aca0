"""Where a study lives, and keeping a storage password out of everything kvt writes.

By default a study is a SQLite file inside the tune directory (nothing to start).
`--storage URL` (or `$KVT_TUNE_STORAGE`, which keeps the URL off the command line and
so out of `ps` and shell history) names a shared database, e.g.
`postgresql://user:PASSWORD@host/db`, so that several machines work on one study. The
password is needed to connect and nowhere else: every URL kvt prints or saves is
`masked`, and every message built from a library's error is `redacted`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, unquote

from kvt.errors import RunError, UsageError, first_line

ENV = "KVT_TUNE_STORAGE"
DB = "study.db"  # the default study, inside the tune directory
MASK = "***"
# scheme://user:password@host... : the password is what lies between the first ":" after
# "//" and the last "@" before the path (a password may itself hold "@" or ":").
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^/@:]*:)(?P<password>[^/]*)(?P<at>@)")
# ...?password=... in the query string, which some drivers take instead.
_QUERY = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<password>[^&]*)", re.I)


def default_url(tune_dir: str | Path) -> str:
    """The SQLite URL of the study inside `tune_dir` (absolute, so that a study opened
    from another folder, or by optuna-dashboard, is the same file)."""
    return f"sqlite:///{(Path(tune_dir) / DB).absolute()}"


def secrets_of(url: str) -> list[str]:
    """The passwords in `url`, as written and decoded (a message may quote either)."""
    found = []
    for pattern in (_USERINFO, _QUERY):
        for match in pattern.finditer(url):
            if match.group("password"):
                found += [match.group("password"), unquote(match.group("password")),
                          quote(unquote(match.group("password")), safe="")]
    return sorted({s for s in found if s}, key=len, reverse=True)


def masked(url: str) -> str:
    """`url` with its password replaced by ***: what kvt prints and saves."""
    url = _USERINFO.sub(lambda m: m["head"] + (MASK if m["password"] else "") + m["at"], url)
    return _QUERY.sub(lambda m: m["head"] + MASK, url)


def redacted(text: str, url: str | None) -> str:
    """`text` (a library's error message) with every password of `url` masked."""
    if not url:
        return text
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text


def resolve(flag: str | None) -> str | None:
    """The storage URL of a new search: --storage, else $KVT_TUNE_STORAGE, else None
    (the default SQLite file)."""
    url = flag or os.environ.get(ENV) or None
    if url is not None and not re.match(r"^[A-Za-z][\w+.-]*://", url):
        # not echoed: a URL typed without its scheme may still hold a password
        raise UsageError("--storage (or $KVT_TUNE_STORAGE) is not a database URL: give one "
                         "such as postgresql://user@host/db or sqlite:///path/study.db")
    return url


def resolve_saved(flag: str | None, saved: str | None) -> str | None:
    """The storage URL of a search that continues: its own. None (its study.db) for a
    search `saved` without one, whatever $KVT_TUNE_STORAGE says; else the saved (masked)
    URL, given again with its password (kvt keeps none) through --storage or the
    environment, or as saved where it has none."""
    if saved is None:
        if flag:
            raise UsageError("this search's study is the study.db in its directory: drop "
                             "--storage")
        return None
    url = resolve(flag)
    if url is None:
        if MASK in saved:
            raise UsageError(f"this study lives in {saved}, whose password kvt does not "
                             f"keep: give it with --storage or ${ENV}")
        return saved
    if masked(url) != saved:
        raise UsageError(f"this study lives in {saved}, not {masked(url)}: give its own "
                         f"--storage (or ${ENV})")
    return url


def connect(url: str):
    """Optuna's storage for `url`, connected now: a database that cannot be reached is a
    one-line RunError (password masked) before anything is written."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            # SQLAlchemy's warnings about a URL may quote it: none reaches the terminal
            warnings.simplefilter("ignore")
            return _rdb(optuna, url)
    except ImportError as e:  # the database's driver (psycopg2, pymysql) is missing
        raise RunError(f"cannot open the study storage {masked(url)}: "
                       f"{redacted(first_line(e), url)}: install the database's driver") \
            from None
    except Exception as e:  # SQLAlchemy's errors: unreachable, refused, wrong password
        raise RunError(f"cannot open the study storage {masked(url)} "
                       f"({redacted(first_line(e), url)}): check the URL and that the "
                       f"database is up") from None


def masked_argv(argv: list[str]) -> list[str]:
    """A command line with the password of every URL in it masked: `--storage URL`,
    `--storage=URL`, and any abbreviation argparse accepts."""
    out = []
    for word in argv:
        key, eq, value = word.partition("=")
        out.append(f"{key}={masked(value)}" if word.startswith("-") and eq else masked(word))
    return out


def _rdb(optuna, url: str):
    if url.startswith("sqlite"):
        # several processes (or machines on one shared disk) on one file wait their turn
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
    return optuna.storages.RDBStorage(url)

"""Study URLs: a password is masked wherever kvt would print or save the URL, and
redacted from library errors, whatever characters it holds."""

import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvt.errors import EXIT_RUN, EXIT_USAGE, RunError, UsageError
from kvt.tune import storage

passwords = st.text(string.ascii_letters + string.digits + "@:!$%^&*()_+-=~.", min_size=3,
                    max_size=20).filter(lambda p: not p.startswith(("*", ".")))


@settings(max_examples=200, deadline=None)
@given(passwords, st.sampled_from(["postgresql", "mysql+pymysql", "postgresql+psycopg"]))
def test_a_password_never_survives_masking(password, scheme):
    for written in (password, quote(password, safe="")):
        url = f"{scheme}://kvt:{written}@db.example.org:5432/studies"
        assert storage.masked(url) == f"{scheme}://kvt:***@db.example.org:5432/studies"
        message = f"connection to {url} failed for user kvt with password {password}"
        assert password not in storage.redacted(message, url)
        assert storage.masked_argv(["tune", "--storage", url])[-1] == storage.masked(url)
        assert storage.masked_argv([f"--storage={url}"]) == [f"--storage={storage.masked(url)}"]


def test_urls_without_a_password_are_left_alone():
    for url in ("sqlite:///tmp/study.db", "postgresql://kvt@host/db", "postgresql://host/db"):
        assert storage.masked(url) == url and storage.secrets_of(url) == []
    assert storage.masked("sqlite:///s.db?timeout=5&password=x1") == \
        "sqlite:///s.db?timeout=5&password=***"


def test_the_environment_gives_the_url_and_a_saved_study_needs_its_password(monkeypatch):
    url = "postgresql://kvt:hunter2@db/studies"
    monkeypatch.setenv(storage.ENV, url)
    assert storage.resolve(None) == url
    saved = storage.masked(url)
    assert storage.resolve_saved(None, saved) == url
    # a search with its own study.db keeps it, whatever the environment says
    assert storage.resolve_saved(None, None) is None
    with pytest.raises(UsageError, match="drop --storage"):
        storage.resolve_saved(url, None)
    monkeypatch.delenv(storage.ENV)
    with pytest.raises(UsageError, match=r"password kvt does not keep: give it with "
                                         r"--storage or \$KVT_TUNE_STORAGE"):
        storage.resolve_saved(None, saved)
    with pytest.raises(UsageError, match="not postgresql://kvt:\\*\\*\\*@other/studies"):
        storage.resolve_saved("postgresql://kvt:hunter2@other/studies", saved)
    with pytest.raises(UsageError) as e:
        storage.resolve("hunter2-not-a-url")
    assert e.value.exit_code == EXIT_USAGE and "hunter2" not in str(e.value)


def test_an_unreachable_storage_is_one_masked_line(tmp_path):
    for url in ("sqlite://kvt:hunter2@/nowhere/study.db",  # SQLAlchemy quotes the URL
                f"sqlite:///{tmp_path}/missing/dir/study.db?password=hunter2"):
        with pytest.raises(RunError) as e:
            storage.connect(url)
        assert e.value.exit_code == EXIT_RUN
        assert "hunter2" not in str(e.value) and "***" in str(e.value)
        assert "\n" not in str(e.value)

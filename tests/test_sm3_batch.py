"""The multi-buffer SM3 library gives exactly OpenSSL's digests, and the hub falls back to OpenSSL without it."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from archive_sink import sm3_batch
from archive_sink.package import AttachmentBytes, hash_sm3


def openssl(messages: list[bytes]) -> list[str]:
    return [hashlib.new("sm3", m).hexdigest() for m in messages]


def test_the_standard_examples_of_gb_t_32905() -> None:
    assert sm3_batch.sm3_hexdigests([b"abc", b"abcd" * 16]) == [
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
    ]


def test_the_library_is_built_and_used_where_a_c_compiler_is() -> None:
    # make setup builds it; a machine with a compiler that silently fell back would lose the speed unnoticed
    assert shutil.which("cc") or shutil.which("gcc"), "this suite's machine has a C compiler"
    assert sm3_batch.accelerated()


def test_every_padding_case_and_lane_refill_matches_openssl() -> None:
    rng = random.Random(32905)
    # lengths around the 56/64-byte padding boundaries, empty messages, and more messages than lanes of
    # very different lengths, so lanes finish at different blocks and take the next message mid-batch
    messages = [rng.randbytes(n) for n in range(0, 300)]
    messages += [
        rng.randbytes(rng.choice([0, 1, 55, 56, 63, 64, 65, 119, 120, 50_000, 200_001])) for _ in range(300)
    ]
    rng.shuffle(messages)
    assert sm3_batch.sm3_hexdigests(messages) == openssl(messages)


def test_the_same_message_twice_and_an_empty_one() -> None:
    data = os.urandom(70_000)
    assert sm3_batch.sm3_hexdigests([data, data, b""]) == openssl([data, data, b""])


def test_attachments_get_their_sm3_in_one_call_and_keep_a_known_one() -> None:
    atts = [AttachmentBytes(f"{i}.pdf", "application/pdf", os.urandom(1000 + i)) for i in range(40)]
    atts[0].__dict__["sm3"] = "already known"  # computed before: not computed again
    hash_sm3(atts)
    assert atts[0].sm3 == "already known"
    assert [a.sm3 for a in atts[1:]] == openssl([a.data for a in atts[1:]])


def test_openssl_is_used_when_asked_and_gives_the_same_digests() -> None:
    code = (
        "import os; from archive_sink import sm3_batch as s; m=[os.urandom(999) for _ in range(20)];"
        "import hashlib; assert s.sm3_hexdigests(m) == [hashlib.new('sm3', x).hexdigest() for x in m];"
        "print(s.accelerated())"
    )
    env = {**os.environ, "ARCHIVE_HUB_SM3": "openssl"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.fixture
def library_decided_anew() -> Iterator[None]:
    """sm3_batch decides again under the test's settings, and once more after it (its choice is cached)."""
    sm3_batch._library.cache_clear()
    yield
    sm3_batch._library.cache_clear()


def openssl_hashes(messages: list[bytes]) -> None:
    assert not sm3_batch.accelerated()
    assert sm3_batch.sm3_hexdigests(messages) == openssl(messages)


@pytest.mark.usefixtures("library_decided_anew")
def test_a_library_that_differs_from_openssl_is_refused(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a miscompiled build: the same source with one round constant changed
    broken = tmp_path / "sm3_multi.c"
    broken.write_text(sm3_batch.SOURCE.read_text().replace("0x79cc4519u", "0x79cc451au"))
    monkeypatch.setattr(sm3_batch, "SOURCE", broken)
    monkeypatch.setattr(sm3_batch, "BUILD_DIR", tmp_path / "_build")
    openssl_hashes([b"abc", b"def"])


@pytest.mark.usefixtures("library_decided_anew")
def test_no_compiler_means_openssl(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm3_batch, "BUILD_DIR", tmp_path / "_build")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    openssl_hashes([b"abc", b"x" * 100])


@pytest.mark.usefixtures("library_decided_anew")
def test_a_build_folder_that_cannot_be_written_means_openssl(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the build folder would go")
    monkeypatch.setattr(sm3_batch, "BUILD_DIR", blocker / "_build")
    openssl_hashes([b"abc", b"x" * 100])

"""Commits to a repo (hubserve.commits): the NDJSON lines, LFS objects and their tickets, the new folder."""

from __future__ import annotations

import base64
import hashlib
import time

import orjson
import pytest

from hubserve.commits import (CommitBuilder, LfsObjects, apply_commit, git_blob_sha1, ignored, refused, repo_path,
                              upload_mode)
from hubserve.errors import EntryNotFound, InvalidInput, PayloadTooLarge


def line(key: str, **value) -> bytes:
    return orjson.dumps({"key": key, "value": value})


def inline(path: str, content: bytes) -> bytes:
    return line("file", path=path, content=base64.b64encode(content).decode(), encoding="base64")


@pytest.fixture
def lfs(tmp_path):
    return LfsObjects(tmp_path / "store")


def upload(lfs: LfsObjects, content: bytes) -> str:
    oid = hashlib.sha256(content).hexdigest()
    record = lfs.take(lfs.ticket("acme/m", oid, len(content)))
    receiver = lfs.receiver(record)
    try:
        receiver.write(content)
        receiver.finish()
    finally:
        receiver.close()
    return oid


def builder(tmp_path, lfs, limit=10_000, trust_pickle=False) -> CommitBuilder:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    commit = CommitBuilder(work, lfs, limit, trust_pickle)
    commit.add(line("header", summary="s", description=""))
    return commit


def test_a_commit_makes_the_new_folder_from_the_old_one_and_its_operations(tmp_path, lfs):
    current = tmp_path / "current"
    (current / "sub").mkdir(parents=True)
    (current / "config.json").write_text("{}")
    (current / "old.txt").write_text("old")
    (current / "sub" / "gone.txt").write_text("x")
    (current / ".hidden").write_text("never copied")
    oid = upload(lfs, b"\x00weights")
    commit = builder(tmp_path, lfs)
    for item in (inline("README.md", b"card"), line("lfsFile", path="model.safetensors", algo="sha256", oid=oid,
                                                   size=8),
                 line("deletedFile", path="old.txt"), line("deletedFolder", path="sub/"),
                 inline(".gitattributes", b"ignored"), inline("nested/x.json", b"{}")):
        commit.add(item)
    staged = tmp_path / "staged"
    apply_commit(current, staged, commit)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == [
        "README.md", "config.json", "model.safetensors", "nested/x.json"]
    assert (staged / "model.safetensors").read_bytes() == b"\x00weights"
    # unchanged files are links to the same data, not copies
    assert (staged / "config.json").stat().st_ino == (current / "config.json").stat().st_ino
    assert (current / "old.txt").exists()  # the current folder is never changed


@pytest.mark.parametrize("path", ["../escape.json", "/abs.json", "a/../../b", "a\\b.json", ""])
def test_paths_that_leave_the_repo_are_refused(tmp_path, lfs, path):
    commit = builder(tmp_path, lfs)
    with pytest.raises(InvalidInput):
        commit.add(inline(path, b"x"))


@pytest.mark.parametrize("path", ["modeling.py", "custom_generate/generate.py", "custom_generate/x.json"])
def test_code_is_refused(tmp_path, lfs, path):
    with pytest.raises(InvalidInput, match="code"):
        builder(tmp_path, lfs).add(inline(path, b"x"))


def test_pickle_weights_only_for_a_trusted_model(tmp_path, lfs):
    with pytest.raises(InvalidInput, match="pickle"):
        builder(tmp_path, lfs).add(inline("pytorch_model.bin", b"x"))
    builder(tmp_path, lfs, trust_pickle=True).add(inline("pytorch_model.bin", b"x"))
    assert refused("model.safetensors", False) is None


def test_an_lfs_file_that_was_never_uploaded_is_refused(tmp_path, lfs):
    with pytest.raises(InvalidInput, match="not uploaded"):
        builder(tmp_path, lfs).add(line("lfsFile", path="model.safetensors", algo="sha256", oid="a" * 64, size=3))


def test_a_commit_is_bounded_and_well_formed(tmp_path, lfs):
    with pytest.raises(PayloadTooLarge):
        builder(tmp_path, lfs, limit=4).add(inline("a.txt", b"12345"))
    work = tmp_path / "w2"
    work.mkdir()
    with pytest.raises(InvalidInput, match="header"):
        CommitBuilder(work, lfs, 100).add(inline("a.txt", b"1"))
    for bad in (b"not json", b'{"key": "file"}', line("rename", path="a"),
                line("file", path="a.txt", content="%%%", encoding="base64")):
        with pytest.raises(InvalidInput):
            builder(tmp_path, lfs).add(bad)


def test_deleting_what_does_not_exist_is_entry_not_found(tmp_path, lfs):
    current = tmp_path / "current"
    current.mkdir()
    for op in (line("deletedFile", path="nope.txt"), line("deletedFolder", path="nope/")):
        commit = builder(tmp_path, lfs)
        commit.add(op)
        with pytest.raises(EntryNotFound):
            apply_commit(current, tmp_path / f"staged-{time.monotonic_ns()}", commit)


def test_a_file_cannot_become_a_folder(tmp_path, lfs):
    current = tmp_path / "current"
    current.mkdir()
    (current / "a").write_text("file")
    commit = builder(tmp_path, lfs)
    commit.add(inline("a/b.json", b"{}"))
    with pytest.raises(InvalidInput, match="is a file"):
        apply_commit(current, tmp_path / "staged", commit)


def test_lfs_tickets_serve_once_and_uploads_must_be_the_announced_object(lfs):
    content = b"\x00" * 100
    oid = hashlib.sha256(content).hexdigest()
    ticket = lfs.ticket("acme/m", oid, len(content))
    record = lfs.take(ticket)
    with pytest.raises(EntryNotFound):
        lfs.take(ticket)  # single use
    with pytest.raises(EntryNotFound):
        lfs.take("../../etc/passwd")
    for body, error in ((content[:50], InvalidInput), (content + b"x", PayloadTooLarge), (b"\x01" * 100, InvalidInput)):
        receiver = lfs.receiver(record)
        with pytest.raises(error):
            receiver.write(body)
            receiver.finish()
        receiver.close()
        assert not lfs.has(oid, len(content))
    assert list(lfs.objects.iterdir()) == []  # nothing partial is left
    assert upload(lfs, content) == oid and lfs.has(oid, 100)


def test_an_expired_ticket_is_refused(lfs, monkeypatch):
    ticket = lfs.ticket("acme/m", "b" * 64, 1)
    monkeypatch.setattr(time, "time", lambda: 1e12)
    with pytest.raises(EntryNotFound):
        lfs.take(ticket)


def test_upload_modes_ignored_files_and_git_ids(tmp_path):
    assert upload_mode(b"{}", 2) == "regular"
    assert upload_mode(b"\x00\x01", 2) == "lfs"
    assert upload_mode(b"text", 20 * 1024**2) == "lfs"
    assert ignored(".gitattributes") and ignored(".cache/huggingface/x") and not ignored("a/b.json")
    assert repo_path("./a//b.json") == "a/b.json"
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`

"""Commits to a repo (hubserve.repos.commits): the NDJSON lines, LFS objects and their tickets, the new folder."""

from __future__ import annotations

import base64
import hashlib
import tempfile
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubserve.config.limits import LimitsConfig
from hubserve.errors import EntryNotFound, InvalidInput, PayloadTooLarge
from hubserve.repos.commits import CommitBuilder, Lines, apply_commit, git_blob_sha1, refused, upload_mode
from hubserve.repos.lfs import LfsObjects
from hubserve.repos.repo_paths import ignored, repo_path

LIMITS = LimitsConfig(max_upload_bytes=10_000)


def line(key: str, **value) -> bytes:
    return orjson.dumps({"key": key, "value": value})


def inline(path: str, content: bytes) -> bytes:
    return line("file", path=path, content=base64.b64encode(content).decode(), encoding="base64")


@pytest.fixture
def lfs(tmp_path):
    return LfsObjects(tmp_path / "store", LIMITS)


def upload(lfs: LfsObjects, content: bytes) -> str:
    oid = hashlib.sha256(content).hexdigest()
    record = lfs.take(lfs.issue("someone", "acme/m", [(oid, len(content))])[oid])
    receiver = lfs.receiver(record)
    try:
        receiver.write(content)
        receiver.finish()
    finally:
        receiver.close()
    return oid


def builder(tmp_path, lfs, limit=10_000, trust_pickle=False) -> CommitBuilder:
    work = tmp_path / f"work-{time.monotonic_ns()}"
    work.mkdir()
    commit = CommitBuilder(work, lfs, LimitsConfig(max_upload_bytes=max(limit, 1024)), trust_pickle)
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
        builder(tmp_path, lfs, limit=1024).add(inline("a.txt", b"x" * 1025))
    work = tmp_path / "w2"
    work.mkdir()
    with pytest.raises(InvalidInput, match="header"):
        CommitBuilder(work, lfs, LIMITS).add(inline("a.txt", b"1"))
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
    ticket = lfs.issue("someone", "acme/m", [(oid, len(content))])[oid]
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
    ticket = lfs.issue("someone", "acme/m", [("b" * 64, 1)])["b" * 64]
    monkeypatch.setattr(time, "time", lambda: 1e12)
    with pytest.raises(EntryNotFound):
        lfs.take(ticket)


def test_upload_modes_ignored_files_and_git_ids(tmp_path):
    assert upload_mode(b"{}", 2) == "regular"
    assert upload_mode(b"\x00\x01", 2) == "lfs"
    assert upload_mode(b"text", 20 * 1024**2) == "lfs"
    assert ignored(".gitattributes") and ignored(".cache/huggingface/x") and not ignored("a/b.json")
    assert repo_path("./a//b.json", LIMITS) == "a/b.json"
    path = tmp_path / "f"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


# -- the order of operations -------------------------------------------------------------

def files_of(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_path_added_twice_keeps_its_last_content_and_no_other_file_is_overwritten(tmp_path, lfs):
    commit = builder(tmp_path, lfs)
    for item in (inline("a.txt", b"first a"), inline("a.txt", b"second a"), inline("b.txt", b"b's bytes")):
        commit.add(item)
    apply_commit(None, tmp_path / "staged", commit)
    assert files_of(tmp_path / "staged") == {"a.txt": b"second a", "b.txt": b"b's bytes"}


def test_deletes_and_adds_of_one_path_apply_in_their_order(tmp_path, lfs):
    current = tmp_path / "current"
    current.mkdir()
    (current / "kept.txt").write_text("old")
    commit = builder(tmp_path, lfs)
    for item in (inline("new.txt", b"added"), line("deletedFile", path="new.txt"),  # added, then deleted
                 line("deletedFile", path="kept.txt"), inline("kept.txt", b"re-added"),  # deleted, then re-added
                 inline("d/x.txt", b"x"), line("deletedFolder", path="d/")):
        commit.add(item)
    apply_commit(current, tmp_path / "staged", commit)
    assert files_of(tmp_path / "staged") == {"kept.txt": b"re-added"}
    assert (current / "kept.txt").read_text() == "old"


PATHS = ["a.txt", "b.txt", "d/c.txt", "d/e.txt"]
LFS_CONTENTS = [b"\x00lfs one", b"\x00lfs two"]
OPERATIONS = st.lists(st.one_of(
    st.tuples(st.just("file"), st.sampled_from(PATHS), st.binary(max_size=6)),
    st.tuples(st.just("lfsFile"), st.sampled_from(PATHS), st.sampled_from([0, 1])),
    st.tuples(st.just("deletedFile"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("deletedFolder"), st.just("d"), st.none()),
), max_size=12)


def expected_repo(start: dict[str, bytes], operations) -> dict[str, bytes] | None:
    """The repo after ``operations`` applied in order (None: a delete of something missing)."""
    state = dict(start)
    for kind, path, arg in operations:
        if kind == "file":
            state[path] = arg
        elif kind == "lfsFile":
            state[path] = LFS_CONTENTS[arg]
        elif kind == "deletedFile":
            if path not in state:
                return None
            del state[path]
        else:
            inside = [p for p in state if p.startswith(f"{path}/")]
            if not inside:
                return None
            for p in inside:
                del state[p]
    return state


@settings(max_examples=150, deadline=None)
@given(operations=OPERATIONS)
def test_any_sequence_of_operations_gives_the_repo_of_applying_them_in_order(operations):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lfs = LfsObjects(tmp / "store", LIMITS)
        oids = [upload(lfs, content) for content in LFS_CONTENTS]
        start = {"a.txt": b"old a", "d/c.txt": b"old c"}
        current = tmp / "current"
        for path, content in start.items():
            (current / path).parent.mkdir(parents=True, exist_ok=True)
            (current / path).write_bytes(content)
        commit = builder(tmp, lfs)
        for kind, path, arg in operations:
            if kind == "file":
                commit.add(inline(path, arg))
            elif kind == "lfsFile":
                commit.add(line("lfsFile", path=path, algo="sha256", oid=oids[arg], size=len(LFS_CONTENTS[arg])))
            else:
                commit.add(line(kind, path=path))
        want = expected_repo(start, operations)
        if want is None:
            with pytest.raises(EntryNotFound):
                apply_commit(current, tmp / "staged", commit)
        else:
            apply_commit(current, tmp / "staged", commit)
            assert files_of(tmp / "staged") == want
        assert files_of(current) == start


@settings(max_examples=100, deadline=None)
@given(body=st.lists(st.binary(max_size=20).filter(lambda b: b"\n" not in b), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_lines_are_split_whole_however_the_body_arrives(body, cuts):
    data = b"\n".join(body)
    splitter, lines, start = Lines(20), [], 0
    for cut in sorted(set(cuts)) + [len(data)]:
        lines += splitter.feed(data[start:max(start, cut)])
        start = max(start, cut)
    assert lines + [splitter.rest()] == (data.split(b"\n") if body else [b""])


def test_a_line_past_the_bound_is_refused_before_it_is_held():
    splitter = Lines(10)
    assert splitter.feed(b"0123456789\nab") == [b"0123456789"]
    with pytest.raises(PayloadTooLarge):
        splitter.feed(b"c" * 9)
    assert len(splitter.pending) <= 10


# -- bounds of paths and LFS quotas --------------------------------------------------------

@pytest.mark.parametrize("path", ["a" * 256, "d/" + "b" * 256 + ".json", "é" * 128, "/".join(["abcdefghi"] * 103)])
def test_over_long_paths_are_refused_with_the_limit_named(tmp_path, lfs, path):
    commit = builder(tmp_path, lfs)
    with pytest.raises(InvalidInput, match=r"limits\.max_path"):
        commit.add(inline(path, b"x"))
    with pytest.raises(InvalidInput, match=r"limits\.max_path"):
        commit.add(line("deletedFile", path=path))
    assert repo_path("é" * 127, LIMITS) == "é" * 127  # 254 bytes


def test_a_commit_has_at_most_max_repo_files_operations(tmp_path, lfs):
    work = tmp_path / "few"
    work.mkdir()
    commit = CommitBuilder(work, lfs, LimitsConfig(max_repo_files=2))
    commit.add(line("header", summary="s"))
    commit.add(inline("a.txt", b"a"))
    commit.add(line("deletedFile", path="b.txt"))
    with pytest.raises(InvalidInput, match="limits.max_repo_files"):
        commit.add(inline("c.txt", b"c"))


def test_lfs_objects_in_flight_are_bounded_per_token(tmp_path, monkeypatch):
    lfs = LfsObjects(tmp_path / "store", LimitsConfig(max_lfs_objects_in_flight=3, max_lfs_bytes_in_flight=100))
    oids = [f"{i:064x}" for i in range(5)]
    assert set(lfs.issue("token:a", "acme/m", [(oids[0], 10), (oids[1], 10)])) == {oids[0], oids[1]}
    with pytest.raises(PayloadTooLarge, match="max_lfs_objects_in_flight"):
        lfs.issue("token:a", "acme/m", [(oids[2], 10), (oids[3], 10)])  # 4 objects: refused whole
    with pytest.raises(PayloadTooLarge, match="max_lfs_bytes_in_flight"):
        lfs.issue("token:a", "acme/m", [(oids[2], 90)])
    lfs.issue("token:a", "acme/m", [(oids[0], 10), (oids[2], 10)])  # one announced again counts once
    lfs.issue("token:b", "acme/m", [(oids[3], 100)])  # each token has its own quota
    lfs.drop([oids[0]])  # a commit took it
    lfs.issue("token:a", "acme/m", [(oids[4], 10)])
    later = time.time() + 2 * 3600  # announced, never uploaded: freed once the tickets expired
    monkeypatch.setattr(time, "time", lambda: later)
    lfs.issue("token:a", "acme/m", [(f"{i:064x}", 30) for i in range(10, 13)])


def test_uploaded_objects_hold_the_quota_until_swept(tmp_path, monkeypatch):
    limits = LimitsConfig(max_lfs_objects_in_flight=1, lfs_unclaimed_ttl_s=7200)
    lfs = LfsObjects(tmp_path / "store", limits)
    content = b"\x00" * 10
    oid = hashlib.sha256(content).hexdigest()
    receiver = lfs.receiver(lfs.take(lfs.issue("token:a", "acme/m", [(oid, 10)])[oid]))
    receiver.write(content)
    receiver.finish()
    receiver.close()
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start + 3700)  # past the ticket's life, before the sweep
    lfs.sweep()
    assert lfs.has(oid, 10)
    with pytest.raises(PayloadTooLarge):
        lfs.issue("token:a", "acme/m", [("f" * 64, 1)])
    monkeypatch.setattr(time, "time", lambda: start + 7300)
    lfs.sweep()
    assert not lfs.has(oid, 10)
    lfs.issue("token:a", "acme/m", [("f" * 64, 1)])

"""Archive unpacking and model folder checks (no server)."""

import io
import json
import stat
import tarfile
import threading
import zipfile

import pytest

from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput, PayloadTooLarge
from hubserve.repos import uploads
from hubserve.repos.uploads import check_model_folder, install, model_root, remove, unpack


def write_tar(path, entries):
    with tarfile.open(path, "w") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def entry(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("bad", [
    entry("../x"), entry("a/../../x"), entry("/abs"), entry("ok/link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    entry("hard", kind=tarfile.LNKTYPE, link="config.json"), entry("dev", kind=tarfile.CHRTYPE),
    entry("fifo", kind=tarfile.FIFOTYPE), entry("back\\slash"),
])
def test_unsafe_tar_entries_are_refused(tmp_path, bad):
    archive = tmp_path / "a.tar"
    write_tar(archive, [entry("config.json", b"{}"), bad])
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(InvalidInput):
        unpack(archive, target, LimitsConfig(max_upload_bytes=10_000))
    assert not (tmp_path / "x").exists()


def test_zip_links_and_slips_are_refused(tmp_path):
    for name, mode in (("link", stat.S_IFLNK | 0o777), ("../slip", stat.S_IFREG | 0o644)):
        archive = tmp_path / f"{name.strip('./')}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"/etc/passwd")
        target = tmp_path / f"out-{archive.stem}"
        target.mkdir()
        with pytest.raises(InvalidInput):
            unpack(archive, target, LimitsConfig(max_upload_bytes=10_000))


def test_unpacked_size_is_bounded(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("big.safetensors")
        info.size = 1_000_000
        tar.addfile(info, io.BytesIO(b"\0" * info.size))
    assert archive.stat().st_size < 10_000
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PayloadTooLarge):
        unpack(archive, target, LimitsConfig(max_upload_bytes=100_000))


def test_model_folder_checks(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(InvalidInput, match="config.json"):
        check_model_folder(folder, limits=LimitsConfig())
    (folder / "config.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="valid JSON"):
        check_model_folder(folder, limits=LimitsConfig())
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InvalidInput, match="no weights"):
        check_model_folder(folder, limits=LimitsConfig())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InvalidInput, match="pickle weight files"):
        check_model_folder(folder, limits=LimitsConfig())
    assert check_model_folder(folder, trust_pickle=True, limits=LimitsConfig())["model_type"] == "bert"
    (folder / "pytorch_model.bin").unlink()
    (folder / "model.safetensors").write_bytes(b"\0")
    assert check_model_folder(folder, limits=LimitsConfig()) == {"model_type": "bert"}


def test_a_diffusers_pipeline_folder_is_a_model(tmp_path):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    assert check_model_folder(folder, limits=LimitsConfig())["_class_name"] == "StableDiffusionPipeline"
    (folder / "model_index.json").write_text(json.dumps({**index, "unet": ["evil_module", "Unet"]}))
    with pytest.raises(InvalidInput, match="refused"):
        check_model_folder(folder, limits=LimitsConfig())


@pytest.mark.parametrize("can_swap", [True, False])
def test_a_reader_finds_the_old_model_or_the_new_one_while_installs_replace_it(tmp_path, monkeypatch, can_swap):
    if not can_swap:
        monkeypatch.setattr(uploads, "_exchange", lambda a, b: False)
    staging, target = tmp_path / ".uploads", tmp_path / "org" / "name"
    staging.mkdir()
    seen, stop = set(), threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.add((target / "config.json").read_text())
            except FileNotFoundError:
                seen.add("missing")

    for i in range(300):
        staged = staging / f"u{i}"
        staged.mkdir()
        (staged / "config.json").write_text(str(i))
        install(staged, target)
        if i == 0:
            reader = threading.Thread(target=read)
            reader.start()
    stop.set()
    reader.join()
    assert (target / "config.json").read_text() == "299" and list(staging.iterdir()) == []
    if can_swap:
        assert "missing" not in seen and len(seen) > 1, sorted(seen)[:5]


def test_a_single_top_folder_is_the_model_and_installs_replace_whole(tmp_path):
    staged = tmp_path / "store" / ".uploads" / "u1"
    (staged / "my-model").mkdir(parents=True)
    (staged / "my-model" / "config.json").write_text("{}")
    root = model_root(staged)
    assert root == staged / "my-model"
    target = tmp_path / "store" / "org" / "name"
    install(root, target)
    assert (target / "config.json").read_text() == "{}"
    second = tmp_path / "store" / ".uploads" / "u2"
    second.mkdir()
    (second / "config.json").write_text('{"v": 2}')
    install(second, target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json"] and "2" in (target / "config.json").read_text()
    assert [p.name for p in (tmp_path / "store" / ".uploads").iterdir()] == ["u1"]  # only the emptied folder
    remove(target, tmp_path / "store" / ".uploads")
    assert not (tmp_path / "store" / "org").exists()

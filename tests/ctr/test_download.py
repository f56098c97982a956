"""Download helpers, offline: file:// URLs, the checksum check, unpacking (tasks.ctr.download)."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zipfile

import pytest

from tasks.ctr import download


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_checksum_mismatch_discards_the_download(tmp_path):
    source = tmp_path / "ml-1m.zip"
    source.write_bytes(b"not the archive")
    data_dir = tmp_path / "data"
    with pytest.raises(ValueError, match="sha256 mismatch .* expected 0{64}, got "):
        download.download_movielens_1m(data_dir, sha256="0" * 64, url=source.as_uri())
    assert not list((data_dir / "downloads").iterdir())  # nothing half-written is left
    assert not (data_dir / "movielens-1m").exists()


def test_a_sum_is_required(tmp_path):
    with pytest.raises(ValueError, match="no sha256 known"):
        download.fetch((tmp_path / "x").as_uri(), tmp_path / "y")


def test_movielens_zip_is_verified_and_unpacked(tmp_path):
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
        zf.writestr("ml-1m/ratings.dat", "1::1::5::978300760\n")
    folder = download.download_movielens_1m(
        tmp_path / "data", sha256=sha(archive.read_bytes()), url=archive.as_uri()
    )
    assert folder == tmp_path / "data" / "movielens-1m"
    assert (folder / "ratings.dat").read_text() == "1::1::5::978300760\n"
    assert download.sha256_of(tmp_path / "data" / "downloads" / "ml-1m.zip") == sha(
        archive.read_bytes()
    )


def test_criteo_archive_kinds(tmp_path):
    line = b"0\t1" + b"\t" * 38 + b"\n"
    tar = tmp_path / "dac.tar.gz"
    member = tmp_path / "train.txt"
    member.write_bytes(line)
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(member, arcname="train.txt")
    folder = download.download_criteo(tar.as_uri(), tmp_path / "a", sha256=sha(tar.read_bytes()))
    assert (folder / "train.txt").read_bytes() == line
    gz = tmp_path / "train.txt.gz"
    gz.write_bytes(gzip.compress(line))
    folder = download.download_criteo(gz.as_uri(), tmp_path / "b", sha256=sha(gz.read_bytes()))
    assert (folder / "train.txt").read_bytes() == line


def test_zip_members_cannot_escape(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/../../escaped.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        download.unpack_movielens(archive, tmp_path / "out")

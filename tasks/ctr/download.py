"""Fetch MovieLens-1M and Criteo into the data folder, checking sha256 before unpacking.

    python -m tasks.ctr.download movielens1m --sha256 <sum> [--data-dir DIR]
    python -m tasks.ctr.download criteo --url <url of dac.tar.gz> --sha256 <sum> [--data-dir DIR]

MovieLens-1M comes from GroupLens (ML1M_URL) and is unpacked into `<data_dir>/movielens-1m/`
(ratings.dat, users.dat, movies.dat, README). Criteo's Kaggle archive (dac.tar.gz: train.txt,
test.txt, readme.txt) has no stable public URL; pass the one you are allowed to use. It is
unpacked into `<data_dir>/criteo/`, where the CTR task looks for `criteo/train.txt`; a plain
`.txt` or a `.gz` of train.txt is accepted too.

MovieLens-1M's sum is recorded in KNOWN_SHA256 (the archive GroupLens publishes with MD5
c4d9eecfca2ab87c1945afe126590906; the same SHA-256 is pinned by several independent public
projects; it could not be recomputed from this machine, which has no internet). Criteo's archive
has no recorded sum, so `sha256` is required for it; add a sum you have checked to KNOWN_SHA256
(keyed by URL) and it becomes the default. Both datasets forbid redistribution:
keep them out of the repository.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from tasks.ctr.data import resolve_data_dir

log = logging.getLogger(__name__)

ML1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
KNOWN_SHA256: dict[str, str] = {  # url -> sha256 of the file served there
    ML1M_URL: "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
}
_CHUNK = 1 << 20


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_sum(url: str, sha256: str | None) -> str:
    expected = sha256 or KNOWN_SHA256.get(url)
    if not expected:
        raise ValueError(
            f"no sha256 known for {url}: pass sha256=... (a sum you trust); none is recorded"
        )
    return expected.lower()


def fetch(url: str, dest: Path, sha256: str | None = None) -> Path:
    """Download `url` to `dest` (atomically) if its sha256 matches; ValueError otherwise.

    A file already at `dest` with the right sum is kept without downloading.
    """
    expected = _expected_sum(url, sha256)
    if dest.is_file() and sha256_of(dest) == expected:
        log.info("%s already present with the expected sha256", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
    tmp = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if actual != expected:
            raise ValueError(
                f"sha256 mismatch for {url}: expected {expected}, got {actual}; the download "
                "was discarded"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _inside(root: Path, member: str) -> Path:
    target = (root / member).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"archive member {member!r} would be written outside {root}")
    return target


def unpack_movielens(archive: Path, folder: Path) -> Path:
    """Extract ml-1m.zip's `ml-1m/*` files into `folder` (flattening the top folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            target = _inside(folder, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    return folder


def unpack_criteo(archive: Path, folder: Path) -> Path:
    """dac.tar.gz -> its files; train.txt.gz -> train.txt; anything else is train.txt itself."""
    folder.mkdir(parents=True, exist_ok=True)
    name = archive.name
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(folder, filter="data")  # refuses absolute paths and links out
    elif name.endswith(".gz"):
        with gzip.open(archive, "rb") as src, open(folder / "train.txt", "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    else:
        shutil.copyfile(archive, folder / "train.txt")
    return folder


def download_movielens_1m(
    data_dir: str | Path | None = None, sha256: str | None = None, url: str = ML1M_URL
) -> Path:
    """Fetch and unpack MovieLens-1M into `<data_dir>/movielens-1m/`; returns that folder."""
    root = resolve_data_dir(data_dir)
    archive = fetch(url, root / "downloads" / Path(url).name, sha256)
    return unpack_movielens(archive, root / "movielens-1m")


def download_criteo(
    url: str, data_dir: str | Path | None = None, sha256: str | None = None
) -> Path:
    """Fetch Criteo from `url` and unpack it into `<data_dir>/criteo/`; returns that folder."""
    root = resolve_data_dir(data_dir)
    archive = fetch(url, root / "downloads" / Path(url).name, sha256)
    return unpack_criteo(archive, root / "criteo")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["movielens1m", "criteo"])
    parser.add_argument("--data-dir", default=None, help="default: $HARMLESS_DATA_DIR")
    parser.add_argument("--url", default=None, help="required for criteo")
    parser.add_argument("--sha256", default=None, help="the archive's expected sha256")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.dataset == "movielens1m":
        folder = download_movielens_1m(args.data_dir, args.sha256, args.url or ML1M_URL)
    else:
        if not args.url:
            parser.error("criteo needs --url (Criteo's terms: fetch it from where you may)")
        folder = download_criteo(args.url, args.data_dir, args.sha256)
    log.info("ready: %s", folder)


if __name__ == "__main__":
    main()

"""`python -m pipeline get-data`: the Dogs vs. Cats photos into data/raw with DVC, recording where they came from.

`dvc import-url` downloads Microsoft's zip of the Asirra cats and dogs photos (`PetImages/{Cat,Dog}/*.jpg`,
12,500 per class, a few of them corrupt: the split's image gate rejects those) and writes
`data/raw/<file>.dvc` with the URL and the server's checksum; `dvc update data/raw/<file>.dvc` fetches it
again if the upstream file changes. The zip is checked (every entry's CRC) before paths.raw points at it.
Run it again and it does nothing but check; a file copied into data/raw by hand is checked and tracked with
`dvc add`. A failed or refused download leaves data/raw as it was and says what to do instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import yaml

from pipeline.core.config import load_config
from pipeline.core.errors import DownloadError
from pipeline.store.manifest import IMAGE_EXTENSION

PETIMAGES_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
RAW_FOLDER = Path("data/raw")
REACH_TIMEOUT_S = 5.0
KAGGLE_ROUTE = (
    "with a Kaggle account, `kaggle competitions download -c dogs-vs-cats -p data/raw` and set "
    "paths.raw: data/raw/dogs-vs-cats.zip in params.yaml"
)
RAW_LINE = re.compile(r"^(?P<key>[ \t]+raw:[ \t]*)(?P<value>[^\s#]+|\"[^\"]*\"|'[^']*')(?P<rest>.*)$")


@dataclass(frozen=True)
class Download:
    """Where the zip comes from and where it lands: data/raw/<the URL's file name> and its .dvc file."""

    url: str
    target: Path

    @property
    def dvc_file(self) -> Path:
        return self.target.with_name(self.target.name + ".dvc")

    def manual_steps(self) -> str:
        return (
            f"By hand: open {self.url} in a browser on a machine with internet, copy the file to {self.target} "
            f"in this project, then run `dvc add {self.target}` and set paths.raw: {self.target} in params.yaml "
            f"(or run `python -m pipeline get-data` again: it checks the file, runs `dvc add` and sets paths.raw); "
            f"or, {KAGGLE_ROUTE}."
        )

    def failed(self, problem: str) -> DownloadError:
        return DownloadError(f"{problem}, so {self.target} was not written. {self.manual_steps()}")


def download_for(url: str, raw_folder: Path = RAW_FOLDER) -> Download:
    name = PurePosixPath(urlparse(url).path).name
    if urlparse(url).scheme not in ("http", "https") or not name:
        raise DownloadError(f"--url must be an http(s) URL ending in a file name, e.g. {PETIMAGES_URL}; got {url!r}")
    return Download(url, raw_folder / name)


def check_reachable(download: Download) -> None:
    """Fail in seconds, with the manual steps, when the server cannot be reached or does not have the file."""
    request = urllib.request.Request(download.url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=REACH_TIMEOUT_S):
            return
    except urllib.error.HTTPError as err:
        if err.code in (404, 410):
            raise download.failed(f"{download.url} answered HTTP {err.code} (the file is not there)") from err
        return  # the server answered: let DVC try (some servers refuse HEAD)
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise download.failed(f"cannot reach {download.url} (offline? {reason})") from err


def check_zip(path: Path, full: bool = True) -> int:
    """The number of image entries in the zip at `path`; a DownloadError when it is not a whole, readable zip.

    full: read every entry and check its CRC (about a second per 300 MB), else only the central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if full else None
            images = sum(1 for info in archive.infolist() if IMAGE_EXTENSION.search(info.filename))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        with open(path, "rb") as head:
            start = head.read(16)
        raise DownloadError(
            f"{path} is not a zip archive ({err}; it starts with {start!r}, {path.stat().st_size:,} bytes)"
        ) from err
    if bad is not None:
        raise DownloadError(f"{path} is damaged: entry {bad!r} fails its CRC check")
    if images == 0:
        raise DownloadError(f"{path} holds no image files (.jpg, .jpeg, .png, .bmp, .gif, .webp)")
    return images


def run_dvc(*args: str) -> int:
    """`dvc <args>` with this interpreter's DVC; its output (progress, errors) goes straight to the user."""
    return subprocess.run([sys.executable, "-m", "dvc", *args], check=False).returncode


def snapshot(folder: Path) -> dict[Path, bytes | None]:
    """The bytes of every small file in `folder` (.dvc and .gitignore files), None for anything else."""
    if not folder.is_dir():
        return {}
    return {p: p.read_bytes() if p.suffix in (".dvc", ".gitignore") else None for p in folder.iterdir()}


def restore(folder: Path, before: dict[Path, bytes | None]) -> None:
    """Put `folder` back as `snapshot` saw it: new files (a half download, its .dvc file) go, edits are undone."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path not in before:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        elif before[path] is not None and path.read_bytes() != before[path]:
            path.write_bytes(before[path])


def import_command(download: Download) -> list[str]:
    """`dvc import-url <url> <target>`; `dvc update <target>.dvc` when an import's record is here without its data
    (a fresh clone): from DVC's cache if it holds the file, else from the URL the record names."""
    if download.dvc_file.is_file() and imported_from(download.dvc_file):
        return ["update", str(download.dvc_file)]
    force = ["--force"] if download.dvc_file.exists() else []  # a `dvc add` record of a file since deleted
    return ["import-url", *force, download.url, str(download.target)]


def import_url(download: Download) -> None:
    """`dvc import-url` into data/raw, then the zip check; on any failure data/raw is left as it was."""
    before = snapshot(download.target.parent)
    try:
        command = import_command(download)
        code = run_dvc(*command)
        if code != 0:
            raise download.failed(f"`dvc {' '.join(command)}` failed (exit {code}, its error is above)")
        try:
            check_zip(download.target)
        except DownloadError as err:
            raise download.failed(f"the download is broken: {err}") from err
    except BaseException:
        restore(download.target.parent, before)
        raise


def track_by_hand_copy(download: Download) -> None:
    """A file the user copied into data/raw: checked, then `dvc add` records its checksum."""
    try:
        check_zip(download.target)
    except DownloadError as err:
        raise DownloadError(
            f"{err}. Delete it and run `python -m pipeline get-data` again. {download.manual_steps()}"
        ) from err
    if run_dvc("add", str(download.target)) != 0:
        raise DownloadError(f"`dvc add {download.target}` failed (its error is above)")


def set_raw_param(params_file: Path, value: Path) -> str | None:
    """Point paths.raw in params_file at `value`, keeping the file's comments; the old value, None if unchanged.

    Only the value on the `raw:` line of the `paths:` block changes; the result is checked by loading it."""
    lines = params_file.read_text().splitlines(keepends=True)
    in_paths = False
    for number, line in enumerate(lines):
        if line.strip() and not line[0].isspace() and not line.startswith("#"):
            in_paths = line.startswith("paths:")
            continue
        match = RAW_LINE.match(line.rstrip("\r\n")) if in_paths else None
        if match:
            old = match["value"].strip("\"'")
            if Path(old) == value:
                return None
            ending = line[len(line.rstrip("\r\n")) :]
            lines[number] = f"{match['key']}{value.as_posix()}{match['rest']}{ending}"
            params_file.write_text("".join(lines))
            if load_config(params_file).paths.raw != value:
                raise DownloadError(f"could not set paths.raw in {params_file}: set paths.raw: {value} by hand")
            return old
    raise DownloadError(f"{params_file} has no paths.raw line: add `raw: {value}` under `paths:`")


def imported_from(dvc_file: Path) -> str | None:
    """The URL a `dvc import-url` .dvc file records; None for a `dvc add` one."""
    deps = (yaml.safe_load(dvc_file.read_text()) or {}).get("deps") or []
    return deps[0].get("path") if deps else None


def human_size(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def get_data(url: str = PETIMAGES_URL, params_file: Path = Path("params.yaml")) -> list[str]:
    """Bring the zip at `url` into data/raw with DVC (once), check it, point paths.raw at it; lines to print."""
    if not Path(".dvc").is_dir():
        raise DownloadError(f"{Path.cwd()} is not the project's root (no .dvc folder): run get-data where dvc.yaml is")
    download = download_for(url)
    dvc_file = download.dvc_file
    if download.target.is_file() and dvc_file.is_file():
        images = check_zip(download.target, full=False)
        lines = [f"get-data: {download.target} is here and tracked by DVC ({dvc_file}): nothing to download"]
    elif download.target.exists():
        track_by_hand_copy(download)
        images = check_zip(download.target, full=False)
        lines = [f"get-data: {download.target} was copied by hand: checked, and tracked by DVC in {dvc_file}"]
    else:
        recorded = imported_from(dvc_file) if dvc_file.is_file() else None
        download = Download(recorded, download.target) if recorded else download  # the record's source wins
        check_reachable(download)
        import_url(download)
        images = check_zip(download.target, full=False)
        lines = [f"get-data: {download.url} -> {download.target}"]
    lines.append(f"get-data: {download.target}: {human_size(download.target.stat().st_size)}, {images:,} image files")
    source = imported_from(dvc_file)
    if source:
        lines.append(f"get-data: `dvc update {dvc_file}` downloads it again if {source} changes")
    old = set_raw_param(params_file, download.target)
    if old is not None:
        lines.append(f"get-data: paths.raw in {params_file}: {old} -> {download.target}")
    lines.append(f"next: `git add {dvc_file} {params_file}` and commit (where the data came from), then `make run`")
    return lines

"""`python -m pipeline get-data` against a real HTTP server on 127.0.0.1 and real DVC: a PetImages zip arrives in
data/raw with its .dvc file and `dvc repro` runs on it; a cut-off, a corrupted and an unreachable download leave
data/raw as it was and print the steps by hand (exit 2)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import make_project, run, sample_images

from pipeline.core.errors import DownloadError
from pipeline.tools.get_data import set_raw_param

NAME = "kagglecatsanddogs_5340.zip"
TARGET = f"data/raw/{NAME}"
KAGGLE_DEFAULT = "data/raw/dogs-vs-cats.zip"  # paths.raw before get-data
PARAMS = {
    "split.train": 0.5,  # fractions: the gate opens every image, the corrupt ones included
    "split.validation": 0.25,
    "split.test": 0.25,
    "featurize.backbones": ["vgg16"],
    "backbones.vgg16.weights": "none",
    "backbones.vgg16.input_size": 32,
    "train.heads": ["logreg"],
    "visualize.heads": [],  # logreg has no picture to draw
}


def petimages_zip(per_class: int = 8, start: int = 0) -> bytes:
    """Microsoft's layout: PetImages/{Cat,Dog}/<n>.jpg, a 0-byte Cat/666.jpg, a cut-off Dog/11702.jpg, Thumbs.db
    files, and the licence and readme beside PetImages."""
    photos = sample_images(per_class, start=start)
    files = {f"PetImages/{n.split('.')[0].title()}/{n.split('.')[1]}.jpg": data for n, data in photos.items()}
    files["PetImages/Cat/666.jpg"] = b""
    files["PetImages/Dog/11702.jpg"] = sample_images(1, ("dog",), start=start)[f"dog.{start}.jpg"][:2000]
    files["PetImages/Cat/Thumbs.db"] = files["PetImages/Dog/Thumbs.db"] = b"\xd0\xcf\x11\xe0 not an image"
    files["CDLA-Permissive-2.0.pdf"] = b"%PDF-1.4 licence"
    files["readme[1].txt"] = b"Dogs vs. Cats"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class Served:
    """What the server sends: `bodies[route]` in full, except under /cut/ (half, then the connection closes)."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.gets: list[str] = []


def handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def headers_for(self) -> bytes | None:
            body = served.bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return None
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
            self.end_headers()
            return body

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
            self.headers_for()

        def do_GET(self) -> None:  # noqa: N802
            served.gets.append(self.path)
            body = self.headers_for()
            if body is None:
                return
            if self.path.startswith("/cut/"):
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(served))
    httpd.handle_error = lambda request, address: None  # a client that hangs up mid-body is expected here
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def get_data(project: Path, url: str) -> tuple[int, str, str]:
    result = run([sys.executable, "-m", "pipeline", "get-data", "--url", url], project, check=False)
    return result.returncode, result.stdout, result.stderr


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def manual_steps(url: str) -> str:
    return (
        f", so {TARGET} was not written. By hand: open {url} in a browser on a machine with internet, copy the file to "
        f"{TARGET} in this project, then run `dvc add {TARGET}` and set paths.raw: {TARGET} in params.yaml (or run "
        "`python -m pipeline get-data` again: it checks the file, runs `dvc add` and sets paths.raw); or, with a "
        "Kaggle account, `kaggle competitions download -c dogs-vs-cats -p data/raw` and set paths.raw: "
        "data/raw/dogs-vs-cats.zip in params.yaml."
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project", Path(KAGGLE_DEFAULT), PARAMS)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, server) -> tuple[Path, str, bytes, str]:
    """A project after `get-data` from the local server: (project, url, the zip served, get-data's stdout)."""
    base, served = server
    url, body = f"{base}/ok/{NAME}", petimages_zip()
    served.bodies[f"/ok/{NAME}"] = body
    root = make_project(tmp_path_factory.mktemp("get") / "project", Path(KAGGLE_DEFAULT), PARAMS)
    code, out, err = get_data(root, url)
    assert code == 0, out + err
    return root, url, body, out


def test_the_zip_arrives_with_its_source_and_checksum_and_paths_raw_points_at_it(imported) -> None:
    root, url, body, out = imported
    assert (root / TARGET).read_bytes() == body
    record = yaml.safe_load((root / f"{TARGET}.dvc").read_text())
    assert record["frozen"] is True  # an import: `dvc repro` never re-downloads it, `dvc update` does
    assert record["deps"][0]["path"] == url
    assert record["deps"][0]["checksum"] == f'"{hashlib.md5(body).hexdigest()}"'  # the server's ETag
    assert record["outs"][0]["md5"] == hashlib.md5(body).hexdigest()
    assert yaml.safe_load((root / "params.yaml").read_text())["paths"]["raw"] == TARGET
    assert f"Importing '{url}' -> '{TARGET}'" in out  # DVC's own lines come first, then get-data's
    assert [line for line in out.splitlines() if line.startswith(("get-data:", "next:"))] == [
        f"get-data: {url} -> {TARGET}",
        f"get-data: {TARGET}: {len(body) / 1e6:,.1f} MB, 18 image files",  # 16 photos, the empty and the cut-off one
        f"get-data: `dvc update {TARGET}.dvc` downloads it again if {url} changes",
        f"get-data: paths.raw in params.yaml: {KAGGLE_DEFAULT} -> {TARGET}",
        f"next: `git add {TARGET}.dvc params.yaml` and commit (where the data came from), then `make run`",
    ]
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], root).stdout.splitlines()
    changed = {line[3:] for line in status}
    assert f"{TARGET}.dvc" in changed and "params.yaml" in changed and TARGET not in changed  # git never offers the zip
    assert changed <= {f"{TARGET}.dvc", "params.yaml", ".dvc/.gitignore", "data/raw/.gitignore"}


def test_run_again_downloads_nothing(imported, server) -> None:
    root, url, body, _ = imported
    _, served = server
    gets = len(served.gets)
    code, out, err = get_data(root, url)
    assert code == 0, err
    assert out.splitlines()[0] == f"get-data: {TARGET} is here and tracked by DVC ({TARGET}.dvc): nothing to download"
    assert "paths.raw in params.yaml" not in out  # already set
    assert len(served.gets) == gets and (root / TARGET).read_bytes() == body


def test_repro_runs_on_it_and_the_gate_rejects_the_corrupt_files(imported, server) -> None:
    root, gets = imported[0], len(server[1].gets)
    out = run(["dvc", "repro", "split"], root).stdout
    assert "Running stage 'extract'" in out and "Running stage 'split'" in out
    assert "split 16 images into data/split: {'train': 8, 'validation': 4, 'test': 4}" in out
    split = json.loads((root / "metrics" / "split.json").read_text())
    counts = json.loads((root / "data" / "split" / "counts.json").read_text())  # the full counts, not a metric
    assert (split["images"], split["rejected"], counts["rejected_by_reason"]) == (18, 2, {"empty": 1, "truncated": 1})
    rejects = (root / "data" / "split" / "rejects.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in rejects[1:]] == ["Cat/666.jpg", "Dog/11702.jpg"]
    assert len(server[1].gets) == gets  # `dvc repro` never downloads an import again (it is frozen)


def test_upstream_change_is_noticed_by_dvc_update(tmp_path: Path, server) -> None:
    base, served = server
    route = f"/moving/{NAME}"
    served.bodies[route] = petimages_zip(per_class=3)
    root = make_project(tmp_path / "project", Path(KAGGLE_DEFAULT), PARAMS)
    assert get_data(root, base + route)[0] == 0
    served.bodies[route] = newer = petimages_zip(per_class=3, start=3)
    run(["dvc", "update", f"{TARGET}.dvc"], root)
    assert (root / TARGET).read_bytes() == newer
    assert yaml.safe_load((root / f"{TARGET}.dvc").read_text())["outs"][0]["md5"] == hashlib.md5(newer).hexdigest()
    (root / TARGET).unlink()  # as in a fresh clone: the record is committed, the data is not
    doctor = run([sys.executable, "-m", "pipeline", "doctor"], root, check=False)
    assert doctor.returncode == 2 and f"{TARGET} is tracked by DVC but not here" in doctor.stdout
    assert f"fix: python -m pipeline get-data (from its source, as {TARGET}.dvc records), or dvc pull" in doctor.stdout
    code, out, _ = get_data(root, base + route)
    assert code == 0 and f"get-data: {base + route} -> {TARGET}" in out
    assert (root / TARGET).read_bytes() == newer  # `dvc update` of the record, from DVC's cache


def test_cut_off_download_leaves_data_raw_as_it_was(project: Path, server) -> None:
    base, served = server
    route = f"/cut/{NAME}"
    served.bodies[route] = petimages_zip()
    before, params = listing(project / "data" / "raw"), (project / "params.yaml").read_text()
    code, out, err = get_data(project, base + route)
    assert code == 2, out + err
    assert "Not enough data to satisfy content length header" in err  # DVC's own error, shown to the user
    assert error_line(err) == (
        f"error: `dvc import-url {base + route} {TARGET}` failed (exit 255, its error is above)"
        + manual_steps(base + route)
    )
    assert listing(project / "data" / "raw") == before
    assert (project / "params.yaml").read_text() == params


def test_corrupted_download_is_removed_with_its_dvc_file(project: Path, server) -> None:
    base, served = server
    route = f"/html/{NAME}"
    served.bodies[route] = b"<html><body>Sign in to continue</body></html>"  # a portal's page, not the zip
    before = listing(project / "data" / "raw")
    code, out, err = get_data(project, base + route)
    assert code == 2, out + err
    assert error_line(err) == (
        f"error: the download is broken: {TARGET} is not a zip archive (File is not a zip file; it starts with "
        f"b'<html><body>Sign', 45 bytes)" + manual_steps(base + route)
    )
    assert listing(project / "data" / "raw") == before  # no zip, no .dvc file, .gitignore as it was


def test_offline_fails_fast_with_the_steps_by_hand(project: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on: the connection is refused, as offline
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/download/{NAME}"
    before = listing(project / "data" / "raw")
    started = time.monotonic()
    code, out, err = get_data(project, url)
    assert code == 2 and out == ""
    assert time.monotonic() - started < 30  # no DVC started, no retries
    assert error_line(err) == (
        f"error: cannot reach {url} (offline? [Errno 111] Connection refused)" + manual_steps(url)
    )
    assert listing(project / "data" / "raw") == before


def test_missing_file_on_the_server_says_so(project: Path, server) -> None:
    base, _ = server
    code, _, err = get_data(project, f"{base}/gone/{NAME}")
    assert code == 2
    assert error_line(err).startswith(f"error: {base}/gone/{NAME} answered HTTP 404 (the file is not there), so ")


def test_a_copy_made_by_hand_is_checked_and_tracked_offline(project: Path) -> None:
    (project / TARGET).write_bytes(petimages_zip(per_class=2))
    code, out, err = get_data(project, f"http://127.0.0.1:9/{NAME}")  # never asked: the file is here
    assert code == 0, err
    assert out.splitlines()[0] == f"get-data: {TARGET} was copied by hand: checked, and tracked by DVC in {TARGET}.dvc"
    assert "dvc update" not in out  # a `dvc add` record has no source to update from
    record = yaml.safe_load((project / f"{TARGET}.dvc").read_text())
    assert record["outs"][0]["md5"] == hashlib.md5((project / TARGET).read_bytes()).hexdigest()
    assert yaml.safe_load((project / "params.yaml").read_text())["paths"]["raw"] == TARGET


def test_a_damaged_copy_made_by_hand_is_refused(project: Path) -> None:
    whole = petimages_zip(per_class=2)
    (project / TARGET).write_bytes(whole[: len(whole) - 100])  # the end of the zip (its directory) is missing
    code, _, err = get_data(project, f"http://127.0.0.1:9/{NAME}")
    assert code == 2
    assert error_line(err).startswith(f"error: {TARGET} is not a zip archive (")
    assert f"Delete it and run `python -m pipeline get-data` again. By hand: open http://127.0.0.1:9/{NAME}" in err
    assert not (project / f"{TARGET}.dvc").exists()


def test_set_raw_param_changes_only_the_value(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    text = (Path(__file__).resolve().parents[1] / "params.yaml").read_text()
    params.write_text(text)
    assert set_raw_param(params, Path(TARGET)) == KAGGLE_DEFAULT
    changed = [(a, b) for a, b in zip(text.splitlines(), params.read_text().splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and changed[0][1] == changed[0][0].replace(KAGGLE_DEFAULT, TARGET)
    assert set_raw_param(params, Path(TARGET)) is None
    params.write_text("paths:\n  images: data/images\n")
    with pytest.raises(DownloadError, match="has no paths.raw line: add `raw: data/raw/kaggle"):
        set_raw_param(params, Path(TARGET))

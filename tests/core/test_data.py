import hashlib
import http.server
import threading
from functools import partial

import pytest

from syslab.core import data
from syslab.core.data import DATASETS, ChecksumMismatch, Dataset, DatasetMissing, DataStore, fetch, sha256_of


@pytest.fixture
def toy_dataset(monkeypatch, tmp_path):
    """A registry entry whose file a local HTTP server serves."""
    served = tmp_path / "served" / "toy"
    served.mkdir(parents=True)
    body = b"a,b\n1,2\n"
    (served / "t.csv").write_bytes(body)
    entry = Dataset("toy", "test", "MIT", "local", {"t.csv": ("http://unused/t.csv", hashlib.sha256(body).hexdigest())})
    monkeypatch.setitem(DATASETS, "toy", entry)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served / "t.csv"
    server.shutdown()


def test_fetch_downloads_and_verifies(toy_dataset, tmp_path):
    url, _ = toy_dataset
    paths = fetch("toy", dest=tmp_path / "cache", base_url=url)
    assert paths[0].read_bytes() == b"a,b\n1,2\n"
    # A second fetch finds the verified file and does not download again (the server is not needed).
    assert fetch("toy", dest=tmp_path / "cache", base_url="http://127.0.0.1:9") == paths


def test_fetch_discards_a_file_with_the_wrong_checksum(toy_dataset, tmp_path):
    url, served = toy_dataset
    served.write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch):
        fetch("toy", dest=tmp_path / "cache", base_url=url)
    assert not any((tmp_path / "cache" / "toy").iterdir())


def test_cli_data_fetch_against_local_server(toy_dataset, tmp_path, capsys):
    from syslab.cli import main

    url, _ = toy_dataset
    with pytest.raises(SystemExit) as e:
        main(["data", "fetch", "toy", "--dest", str(tmp_path / "c"), "--base-url", url])
    assert e.value.code == 0
    assert (tmp_path / "c" / "toy" / "t.csv").is_file()


def test_resolution_prefers_syslab_data_then_cache(monkeypatch, tmp_path):
    for root in ("d", "c"):
        (tmp_path / root / "wlb_doc_lengths").mkdir(parents=True)
        (tmp_path / root / "wlb_doc_lengths" / "doc_lengths.json").write_text(root)
    monkeypatch.setenv("SYSLAB_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("SYSLAB_CACHE", str(tmp_path / "c"))
    assert DataStore().path("wlb_doc_lengths", "doc_lengths.json").read_text() == "d"
    monkeypatch.delenv("SYSLAB_DATA")
    assert DataStore().path("wlb_doc_lengths", "doc_lengths.json").read_text() == "c"
    monkeypatch.setenv("SYSLAB_CACHE", str(tmp_path / "none"))
    with pytest.raises(DatasetMissing, match="syslab data fetch wlb_doc_lengths"):
        DataStore().path("wlb_doc_lengths", "doc_lengths.json")
    with pytest.raises(KeyError):
        DataStore().path("nope", "x")


def test_registry_checksums_match_the_shared_copies():
    store = DataStore()
    checked = 0
    for name, ds in data.DATASETS.items():
        for file, (url, sha) in ds.files.items():
            assert url.startswith("https://") and len(sha) == 64
            p = store.find(name, file)
            if p is not None:
                assert sha256_of(p) == sha, f"{name}/{file}"
                checked += 1
    if checked == 0:
        pytest.skip("no dataset present to check")

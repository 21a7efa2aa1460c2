import gzip
import multiprocessing as mp
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from syslab.cloud.poby import image as I
from syslab.cloud.poby import provision as P
from syslab.core.errors import InputError

FAST = 1e12


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("poby")
    tars = I.synthetic_layers(3_000_000, 3, np.random.default_rng(0))
    return tars, I.registry(root / "reg", tars, segment_bytes=256 * 1024), root


def test_both_formats_hold_the_same_layers(small):
    tars, reg, _ = small
    for name, tar in zip(reg.layers, tars, strict=True):
        assert gzip.decompress(reg.gz(name).read_bytes()) == tar
        blocks = [zlib.decompress(reg.block(name, i).read_bytes()) for i in range(reg.segments[name])]
        assert b"".join(blocks) == tar and reg.segments[name] == -(-len(tar) // (256 * 1024))
        assert all(len(b) == 256 * 1024 for b in blocks[:-1])
    assert 1.5 < sum(map(len, tars)) / reg.compressed_gz < 4


@pytest.mark.parametrize("buffers", [1, 3])
def test_every_mode_unpacks_the_same_tree_and_reaps_the_dpu(small, tmp_path, buffers):
    _, reg, _ = small
    runs = {"containerd": lambda t: P.containerd(reg, t, FAST, tmp_path),
            "blocks": lambda t: P.blocks(reg, t, FAST),
            "pipelined": lambda t: P.pipelined(reg, t, FAST, offload=False, buffers=buffers),
            "poby": lambda t: P.pipelined(reg, t, FAST, offload=True, buffers=buffers)}
    digests = {}
    for name, fn in runs.items():
        target = tmp_path / name
        target.mkdir()
        out = fn(target)
        assert out.time_s > 0 and out.host_cpu_s >= 0
        digests[name] = P.tree_digest(target)
        assert len(list(target.rglob("*.txt"))) > 0
    assert len(set(digests.values())) == 1
    assert not mp.active_children()


@pytest.mark.slow   # CPU seconds of real threads and processes: counted alone, not beside another test
def test_offload_moves_decompression_cpu_off_the_host(tmp_path):
    # big enough that inflating dwarfs the rest; unpacked on tmpfs, where untar's own CPU is small and steady
    reg = I.registry(tmp_path / "reg", I.synthetic_layers(60_000_000, 2, np.random.default_rng(1)))
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    with tempfile.TemporaryDirectory(dir=shm) as a, tempfile.TemporaryDirectory(dir=shm) as b:
        host = P.pipelined(reg, Path(a), FAST, offload=False)
        off = P.pipelined(reg, Path(b), FAST, offload=True)
    # without offload the host's threads do the decompression; with it, the DPU process does
    assert off.dpu_cpu_s > 0.1 and off.host_cpu_s + 0.5 * off.dpu_cpu_s < host.host_cpu_s


def test_link_throttles_and_is_shared(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(bytes(3 * P.CHUNK))
    link = P.Link(30 * P.CHUNK)                     # 0.1 s for the file
    t = time.perf_counter()
    assert len(link.fetch(f)) == 3 * P.CHUNK
    assert time.perf_counter() - t >= 0.095


def test_user_layers_must_be_tars(tmp_path):
    bad = tmp_path / "x.tar"
    bad.write_bytes(gzip.compress(b"hello" * 1000))
    with pytest.raises(InputError, match="not a tar"):
        I.read_layer_tars([bad])
    with pytest.raises(InputError, match="not found"):
        I.read_layer_tars([tmp_path / "missing.tar"])


def test_no_helper_process_outlives_a_run(small, tmp_path):
    import os
    _, reg, _ = small
    (tmp_path / "t").mkdir()
    P.pipelined(reg, tmp_path / "t", FAST, offload=True)
    me = os.getpid()
    children = [d for d in os.listdir("/proc") if d.isdigit() and
                _ppid(f"/proc/{d}/stat") == me]
    assert not children and not list(Path("/dev/shm").glob("syslab-poby-pool-*"))


def _ppid(stat_path):
    try:
        return int(open(stat_path).read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1

"""Container images in two formats, from the same layers: containerd's (one gzip stream per layer) and Poby's
block format (each layer tar cut into fixed-size segments, each deflate-compressed on its own, so any block
can be fetched and decompressed alone).

``synthetic_layers`` makes seeded layer tars (Docker Hub is unreachable here): many small files and a few
large ones (lognormal sizes), a mix of random binary, text-like and zero-padded content, ~2x compressible.
``registry`` writes both formats into a directory standing in for the registry's content store.
Cost: building is dominated by compression (~35 MB/s at level 6 on this machine's cores).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syslab.core.errors import InputError

SEGMENT_BYTES = 32 * 2**20          # the README's -segment_size 32 MiB
LEVEL = 6                           # gzip's default, as registries serve layers
WORDS = np.array(("the of and to in is for on that with as by this be are from at or an it data value config "
                  "return import def class self none true false error log info path file name type list").split())


def synthetic_layers(total_bytes: int, layers: int, rng: np.random.Generator) -> list[bytes]:
    """``layers`` tar archives totalling about ``total_bytes`` of file content."""
    if layers < 1 or total_bytes < layers * 1024:
        raise InputError(f"{layers} layers of {total_bytes} bytes.", field="image", fix="at least 1 KiB per layer.")
    words = np.char.add(WORDS, " ").astype(bytes)
    out = []
    for layer in range(layers):
        buf, size = io.BytesIO(), 0
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            i = 0
            while size < total_bytes / layers:
                n = int(min(rng.lognormal(8.5, 2.0), 16e6, total_bytes / layers - size + 1))
                kind = rng.choice(3, p=(0.25, 0.5, 0.25))
                if kind == 0:
                    data = rng.bytes(n)
                elif kind == 1:
                    data = b"".join(words[rng.integers(0, len(words), n // 4 + 1)])[:n]
                else:
                    data = rng.bytes(n // 5) + bytes(n - n // 5)
                info = tarfile.TarInfo(f"layer{layer}/d{i % 29}/f{i}.{('bin', 'txt', 'img')[kind]}")
                info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
                tf.addfile(info, io.BytesIO(data))
                size += n
                i += 1
        out.append(buf.getvalue())
    return out


@dataclass
class Registry:
    root: Path
    layers: list[str]                  # layer names, in order
    segments: dict[str, int]           # blocks per layer
    uncompressed: dict[str, int]       # tar bytes per layer
    gz_bytes: dict[str, int]           # containerd format: compressed bytes per layer
    block_bytes: dict[str, list[int]]  # block format: compressed bytes per block

    def gz(self, layer: str) -> Path:
        return self.root / "containerd" / f"{layer}.tar.gz"

    def block(self, layer: str, index: int) -> Path:
        return self.root / "poby" / layer / f"{index}.tar.gz"

    @property
    def compressed_gz(self) -> int:
        return sum(self.gz_bytes.values())


def registry(root: str | Path, layer_tars: list[bytes], segment_bytes: int = SEGMENT_BYTES) -> Registry:
    """Write both formats of the image under ``root``."""
    root = Path(root)
    names, segs, sizes, gz_bytes, block_bytes = [], {}, {}, {}, {}
    for i, tar in enumerate(layer_tars):
        name = f"layer{i}"
        (root / "containerd").mkdir(parents=True, exist_ok=True)
        (root / "poby" / name).mkdir(parents=True, exist_ok=True)
        gz = gzip.compress(tar, LEVEL, mtime=0)
        (root / "containerd" / f"{name}.tar.gz").write_bytes(gz)
        gz_bytes[name] = len(gz)
        pieces = range(0, max(len(tar), 1), segment_bytes)
        block_bytes[name] = []
        for j, lo in enumerate(pieces):
            block = zlib.compress(tar[lo:lo + segment_bytes], LEVEL)
            (root / "poby" / name / f"{j}.tar.gz").write_bytes(block)
            block_bytes[name].append(len(block))
        (root / "poby" / name / "total_segment.txt").write_text(str(len(pieces)))
        names.append(name)
        segs[name], sizes[name] = len(pieces), len(tar)
    (root / "manifest.json").write_text(json.dumps({"layers": names, "segments": segs, "bytes": sizes}))
    return Registry(root, names, segs, sizes, gz_bytes, block_bytes)


def read_layer_tars(paths: list[str | Path]) -> list[bytes]:
    """The user's own layers: uncompressed tar files (``docker save`` unpacks to these), checked to be tars whose
    members all stay inside the layer (``core.inputs.check_tar``); 8 GiB in all, as they are held in memory."""
    from syslab.core.inputs import GiB, check_tar, user_file

    fix = "pass uncompressed layer tars (gunzip a .tar.gz first)."
    out, total = [], 0
    for p in map(Path, paths):
        user_file(p, field="--layer", fix="pass uncompressed layer .tar files.", limit_bytes=8 * GiB)
        with p.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":
                raise InputError("is gzip-compressed, not a tar archive.", file=p, field="layer", fix=fix)
        check_tar(p, fix=fix, limit_bytes=8 * GiB)
        total += p.stat().st_size
        if total > 8 * GiB:
            raise InputError("the layers hold more than 8 GiB in all.", file=p, field="--layer",
                             fix="pass a smaller image.")
        out.append(p.read_bytes())
    if not out:
        raise InputError("no layers given.", field="--layer", fix="pass at least one --layer FILE.tar.")
    return out

"""``syslab poby``: provision your image layers containerd's way and Poby's, for real."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Poby: provision container image layers containerd's way and Poby's, for real.",
                  no_args_is_help=True)


@app.command("provision")
def poby_provision(
        layer: Annotated[list[Path] | None, typer.Option(help="an uncompressed layer tar, in order (repeat); "
                                                              "default: a synthetic 4-layer image")] = None,
        size_mb: Annotated[int, typer.Option(help="synthetic image size (MB, uncompressed)")] = 160,
        link_gbps: Annotated[float, typer.Option(help="emulated link for both paths (Gbit/s)")] = 1.0,
        buffers: Annotated[int, typer.Option(help="Poby's host buffers (33 MiB each)")] = 3,
        seed: Annotated[int, typer.Option(help="seed of the synthetic image")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Build both image formats from the layers, provision containerd's way and Poby's into temporary
    directories, compare the unpacked trees byte for byte, remove everything."""
    import shutil
    import tempfile

    import numpy as np

    from syslab.cloud.poby import image as I
    from syslab.cloud.poby import provision as P
    from syslab.core.inputs import option

    # The image is held in memory while both formats are built (8 GiB at most, the layer loader's bound too);
    # 1 to 64 host buffers of 33 MiB; the link is emulated in real time, 0.01 to 1,000 Gbit/s, and an image
    # that would take over an hour to pull is refused.
    size_mb = option(size_mb, "--size-mb", min=1, max=8192, integer=True)
    link_gbps = option(link_gbps, "--link-gbps", min=0.01, max=1000)
    buffers = option(buffers, "--buffers", min=1, max=64, integer=True)
    seed = option(seed, "--seed", min=0, integer=True)
    if shutil.which("tar") is None:
        raise InputError("GNU tar is not on PATH.", field="tar", fix="install tar.")
    rate = link_gbps * 1e9 / 8
    if not layer and size_mb * 10**6 / rate > 3600:
        raise InputError(f"{size_mb:,} MB over {link_gbps:g} Gbit/s takes over an hour.", field="--link-gbps",
                         fix="emulate a faster link, or a smaller --size-mb.")
    tars = I.read_layer_tars(layer) if layer else I.synthetic_layers(size_mb * 10**6, 4, np.random.default_rng(seed))
    if sum(map(len, tars)) / rate > 3600:
        raise InputError(f"{sum(map(len, tars)) / 1e6:,.0f} MB over {link_gbps:g} Gbit/s takes over an hour.",
                         field="--link-gbps", fix="emulate a faster link, or pass a smaller image.")
    scratch = Path(tempfile.mkdtemp(prefix="syslab-poby-"))
    try:
        with err.status("building both formats, then provisioning"):
            reg = I.registry(scratch / "registry", tars)
            for d in ("containerd", "poby", "store"):
                (scratch / d).mkdir()
            base = P.containerd(reg, scratch / "containerd", rate, scratch / "store")
            poby = P.pipelined(reg, scratch / "poby", rate, offload=True, buffers=buffers)
            same = P.tree_digest(scratch / "containerd") == P.tree_digest(scratch / "poby")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    body = {"containerd": base.summary(), "poby": poby.summary(), "trees_identical": same,
            "layers": len(tars), "uncompressed_bytes": sum(map(len, tars)), "gzip_bytes": reg.compressed_gz,
            "link_gbps": link_gbps}
    if as_json:
        print_json(body)
        return
    table = Table("path", "time (s)", "host CPU (s)", "DPU CPU (s)", "stages (s)")
    for name, o in (("containerd", base), ("Poby", poby)):
        table.add_row(name, f"{o.time_s:.2f}", f"{o.host_cpu_s:.2f}", f"{o.dpu_cpu_s:.2f}",
                      ", ".join(f"{k} {v:.2f}" for k, v in o.stages_s.items()))
    out.print(table)
    out.print(f"{len(tars)} layers, {sum(map(len, tars)) / 1e6:.0f} MB; trees identical: {same}; link emulated at "
              f"{link_gbps:g} Gbit/s")

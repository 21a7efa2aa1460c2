"""Poby: SmartNIC-accelerated Image Provisioning for Coldstart in Clouds (USENIX ATC 2025).

Poby splits each layer into independently compressed blocks and provisions them through a data-driven
pipeline, download | decompress | untar over a fixed pool of host buffers, with download and decompression
on a BlueField-2 DPU (RDMA, hardware deflate) and only the untar on the host.

**What runs for real (HYBRID).** Both image formats built from the same layers (``image.py``); containerd's
path (parallel download, then one gunzip stream into untar per layer) and Poby's (block format, pipeline,
offload to a separate "DPU" process pinned to a core that fills host buffers through shared memory), every
one unpacking with the same native untar; trees compared by hash; CPU seconds per process measured
(``provision.py``). **Emulated:** the links (1 Gbps registry path; 100 Gbps for RDMA). **Modelled:** the
DPU's hardware deflate engine at the paper's scale. The image is synthetic (Docker Hub is unreachable);
``syslab poby provision --layer`` takes your own layer tars.
"""

from syslab.cloud.poby import reproduce as _reproduction
from syslab.core.claims import Fidelity, System

SYSTEM = System(
    key="poby",
    name="Poby",
    paper="Poby: SmartNIC-accelerated Image Provisioning for Coldstart in Clouds",
    venue="ATC 2025",
    domain="cloud",
    fidelity=Fidelity.HYBRID,
    real="block image format, the three-stage pipeline over a buffer pool, decompression in a separate process, "
         "native streaming untar, containerd-like baseline; times, CPU seconds and tree hashes measured",
    modelled="network links (emulated rates), the DPU's RDMA and hardware deflate engine at paper scale",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("bin:tar",),
)

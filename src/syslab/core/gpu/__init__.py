"""The one GPU cost model: kernel, link and copy times from cited measurements, validated against others.

Every modelled system takes its GEMM, attention, memory-bound, collective, copy and storage times from here; no
system keeps an efficiency constant of its own (``tests/core/test_gpu_model.py`` greps for them).

- ``compute``: GEMM (large, skinny, on a fraction of the SMs), attention forward/backward, decode attention,
  memory-bound ops;
- ``comm``: collectives by op, ranks, nodes and fabric; host<->device copies; storage reads;
- ``transformer``: a model's forward pass on those kernels;
- ``calibration``: the measurement tables (``compute.csv``, ``comm.csv``) and the fits of the parameters;
- ``validation``: the model beside every measurement it was not fitted on.

Datasheet peaks are in ``core.hardware``; this package never returns a time below them.
"""

from syslab.core.gpu.calibration import calibration
from syslab.core.gpu.comm import (
                                  Fabric,
                                  algbw_busbw,
                                  bus_factor,
                                  collective_s,
                                  copy_gbps,
                                  copy_s,
                                  default_fabric,
                                  storage_gbps,
                                  storage_s,
)
from syslab.core.gpu.compute import (
                                  DEFAULT_CURVE,
                                  SMCurve,
                                  attention_flops,
                                  attention_pairs_s,
                                  attention_s,
                                  decode_attention_s,
                                  gemm_s,
                                  gemm_tflops,
                                  memory_s,
)
from syslab.core.gpu.transformer import ForwardModel

__all__ = ["DEFAULT_CURVE", "Fabric", "ForwardModel", "SMCurve", "algbw_busbw", "attention_flops",
           "attention_pairs_s", "attention_s", "bus_factor", "calibration", "collective_s", "copy_gbps", "copy_s",
           "decode_attention_s", "default_fabric", "gemm_s", "gemm_tflops", "memory_s", "storage_gbps",
           "storage_s"]

"""Entry point of the "DPU" process: ``python -m syslab.cloud.poby.dpu SPEC-JSON`` (see ``provision.DPU``)."""

import json
import sys

from syslab.cloud.poby.provision import PeerGone, dpu_main

if __name__ == "__main__":
    try:
        dpu_main(json.loads(sys.argv[1]))
    except (PeerGone, BrokenPipeError):
        # the host closed its pipes (it was stopped, e.g. by SIGTERM): nothing is left to serve, and the host
        # reports the interruption itself, so leave without a traceback
        sys.exit(1)

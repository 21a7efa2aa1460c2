"""Entry point of the "DPU" process: ``python -m syslab.cloud.poby.dpu SPEC-JSON`` (see ``provision.DPU``)."""

import json
import sys

from syslab.cloud.poby.provision import dpu_main

if __name__ == "__main__":
    dpu_main(json.loads(sys.argv[1]))

"""Entry point of one pack: ``python -m syslab.cloud.burst.pack SPEC-JSON`` (see ``job.run_pagerank``)."""

import json
import sys

from syslab.cloud.burst.job import pack_main

if __name__ == "__main__":
    pack_main(json.loads(sys.argv[1]))

"""DeDe: Decouple and Decompose, Scaling Resource Allocation (OSDI 2025). Work in progress (issue 7).

Here so far: the ADMM core for separable allocation problems with exact vectorised row and column
projections (``admm.py``) and traffic engineering on the real WAN topologies with consensus at (edge, path)
entries (``te.py``), both checked against HiGHS. Still to come: cluster scheduling on the throughput
matrix, subproblems split over worker processes, the reproduction, the CLI; until then the system is not
in the catalog.
"""

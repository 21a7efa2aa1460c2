"""DeDe: Decouple and Decompose, Scaling Resource Allocation (OSDI 2025). Work in progress (issue 7): the
ADMM core (``admm.py``); the traffic-engineering and cluster-scheduling workloads, parallel workers,
reproduction and CLI are not here yet, so the system is not in the catalog."""

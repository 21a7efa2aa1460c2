"""syslab: the systems of OSDI 2025 and USENIX ATC 2025 in ML, GPU and cloud systems, made runnable here."""

__version__ = "0.1.0"

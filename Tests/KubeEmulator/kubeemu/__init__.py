"""kubeemu: a small Kubernetes API emulator for testing InferOps against the real helm binaries.

Python 3.11 standard library only. Run with ``python3 -m kubeemu --help``; see README.md beside
this package for the CLI, the simulation annotations and the control API.
"""

__version__ = "0.1.0"

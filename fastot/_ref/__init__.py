"""Plain float64 references for tests and benchmarks. Solvers never import this package."""

from .assignment import lsa_brute_force, lsa_reference

__all__ = ["lsa_brute_force", "lsa_reference"]

"""Plain float64 references for tests and benchmarks. Solvers never import this package."""

from .assignment import lsa_brute_force, lsa_reference
from .sinkhorn import SinkhornReference, sinkhorn_reference

__all__ = ["SinkhornReference", "lsa_brute_force", "lsa_reference", "sinkhorn_reference"]

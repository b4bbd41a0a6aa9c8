"""Solvers: run kernels on prepared problems and map results back (no input validation here)."""

from .assignment import solve_lsa

__all__ = ["solve_lsa"]

"""Shared plumbing for Engram's rooms (kernels, profiles, traces, simulator): user-facing errors,
atomic file output, fingerprints and the command-line entry. Nothing domain-specific lives here."""

__version__ = "0.1.0"

"""Deterministic simulation of whole process lifetimes (see :mod:`.harness`).

The real provider, engine, renewer and Vault client run on a virtual clock
(:mod:`.clock`, greenlets) against a simulated Vault (:mod:`.simvault`) plugged in below the
HTTP layer. Needs ``greenlet`` (installed with ``sqlalchemy[asyncio]`` and the test extra).
"""

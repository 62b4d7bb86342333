"""Deterministic simulation of whole process lifetimes (virtual clock, simulated Vault)."""

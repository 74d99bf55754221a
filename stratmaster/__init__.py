"""Shared core of StratMaster: settings, contracts, Temporal client, logging."""

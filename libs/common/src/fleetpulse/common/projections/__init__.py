"""Projections of the event log shared by several services (each module names its owner)."""

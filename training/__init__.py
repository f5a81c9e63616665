"""Training entry points and stage recipes for UNINEXT."""

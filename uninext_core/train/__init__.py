"""Training-time assignment and losses (reference §6): matchers, loss terms, BoxInst, re-ID loss, loss weights."""

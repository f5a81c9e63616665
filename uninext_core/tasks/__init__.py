"""Per-task inference: preprocessing, prompt caching, decoding rules, trackers and the perception session."""

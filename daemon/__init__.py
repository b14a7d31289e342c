"""The Hub-compatible pull-through mirror daemon (`mreg serve`); built on `registry`."""

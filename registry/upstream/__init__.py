"""Upstreams: the HTTP core every client shares, the Hub and ModelScope clients, the configured upstreams,
fallback between them with their health, and extra sources for one file."""

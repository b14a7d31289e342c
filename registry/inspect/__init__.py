"""Inspecting repos: reading weights' headers locally or over ranged GETs, and what they add up to."""

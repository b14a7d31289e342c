"""Background jobs' library side: mirror jobs (what is due, syncing one)."""

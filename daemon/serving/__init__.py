"""The serving core every protocol shares: commits and refs the mirror knows, shared transfers into the
store, and sending bytes to clients."""

"""The Hub's protocol, served: metadata routes passed through or answered from the store, and file bytes."""

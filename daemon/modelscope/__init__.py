"""ModelScope's protocol, served: its routes over the mirror's store, and a ModelScope endpoint as upstream."""

"""Filling a blob into a store several replicas share, once for all of them (#13): its lease in the catalog
(``leases``), the leader's fill and the followers' streaming of it (``shared``), and one replica's part in it,
for the daemon's transfers and mirror jobs' pulls alike (``fill``)."""

"""The size budget: which revisions to evict when the store outgrows its budget or its disk
(``policy``, pure) and doing it safely (``evict``); last use recorded without slowing reads (``usage``)."""

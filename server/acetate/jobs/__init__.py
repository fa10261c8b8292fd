"""Jobs: the fair queue (round-robin across owners), the local engine worker thread, records
on disk, the raw-layer cache."""

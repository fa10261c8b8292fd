"""Jobs: the FIFO queue, the single engine worker thread, records on disk, the raw-layer cache."""

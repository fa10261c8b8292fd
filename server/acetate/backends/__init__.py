"""Where resolved requests run: the local GPU thread, or Ray Serve replicas (`acetate[ray]`)."""

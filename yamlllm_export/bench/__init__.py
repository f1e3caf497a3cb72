"""``bench``: prefill latency and decode throughput of exported models (ORT) beside PyTorch, each in its own process."""

"""Request records (ECS JSON lines), their schema, reader and writer, Prometheus metrics and NVML readings."""

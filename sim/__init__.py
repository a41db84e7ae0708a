"""Many peers on one machine: vectorized and real-network engines, baselines, metrics, plots."""

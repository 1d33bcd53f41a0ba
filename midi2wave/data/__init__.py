"""Datasets: preparing a store from MAESTRO (prepare) and reading training examples from it (dataset)."""

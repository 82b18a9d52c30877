"""Durable video jobs: their records (`records`) and the store that keeps them (`store`)."""

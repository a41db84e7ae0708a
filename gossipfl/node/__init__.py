"""The peer node: lifecycle (``peer``), round algorithms (``rounds``), the inbox of
synchronous rounds (``inbox``), the model state and its flat view (``state``), and what a
peer records (``recorder``: checkpoint, metrics.jsonl, log)."""

"""Learning on one peer or many: datasets (``datasets``), partitions (``partition``), built-in
models (``models``), batched training of N models as rows of one tensor (``stacked``), the
counter-based random numbers both runtimes draw from (``sampling``), consensus distance
(``consensus``) and the ``Trainer`` protocol a peer trains through (``trainer``)."""

"""The analysis stage: statistics with intervals (:mod:`.stats`), replicates and sweeps
(:mod:`.replicates`), judge-free metrics (:mod:`.reference`), the responses file (:mod:`.responses`),
plots, the report and the answer browser."""

"""The data stage: instruction records and the study's prompt, a builder per source and the corpus
loader, RAGAS generation of CNN QA (:mod:`.qagen`) and its LLM audit, curation (dedup, the length
policy), and the article-grouped split. Counts in GPT-2 tokens where the study does, with the encoding
its caller passes in: the data stage imports no model."""

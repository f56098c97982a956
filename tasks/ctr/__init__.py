"""CTR prediction (MovieLens-1M, Criteo) with DeepFM / AutoInt and PEP-pruned embeddings.

The setup follows Liu et al. 2021, "Learnable Embedding Sizes for Recommender Systems" (PEP),
whose code the paper builds on (Section 5.3); see :mod:`tasks.ctr.task` for the task itself.
"""

"""Generating answers, whatever the backend: the loop (``loop``), the sampler (``sampling``), the KV
cache bookkeeping (``kv_cache``), what fits in the context (``context_policy``) and ``ChatEngine``
(``chat_engine``), the object front ends talk to."""

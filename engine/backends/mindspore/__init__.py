"""The ``mindspore`` backend: LLaMA as MindSpore Cells (``llama_model``) run as compiled graphs
(``mindspore_executor``) of a few fixed shapes (``graph_shapes``, shared with the mindformers backend)."""

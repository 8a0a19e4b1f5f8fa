"""The optional ``mindformers`` backend: MindFormers 2.0.0's own LLaMA (``mindformers_executor``), its
config from the user's yaml (``mindformers_config``), and what it needs to run on a CPU
(``mindformers_patches``, ``mindformers_kernels``)."""

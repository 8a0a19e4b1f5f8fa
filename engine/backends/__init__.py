"""What runs the model: the executor interface (``executor``), the registry that names and chooses a
backend (``registry``; ``devices`` probes for a GPU), and one folder per backend: ``cpu/`` (JIT-compiled
kernels), ``mindspore/`` (MindSpore graphs), ``mindformers/`` (MindFormers' own LLaMA, optional).

A backend's folder is imported only when that backend is chosen."""

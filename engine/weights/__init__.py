"""Weight files: reading them (``ckpt_reader``, ``safetensors_reader`` behind ``tensor_source``), their
element types (``dtypes``) and tensor names (``names``), checking them against a config (``validation``:
``open_weights``, ``validate_weights``) and for damage (``integrity``: CRC, NaN/Inf)."""

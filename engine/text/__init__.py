"""Text in and out: the tokenizers (``tokenizers/``), the chat templates (``chat_template``) and the
streaming detokenizer with its stop-string filter (``detokenizer``)."""

"""Framework adapters: ``ragprune.integrations.langchain`` and ``ragprune.integrations.llamaindex``.

Each subpackage imports its framework on import; install the matching extra
(``pip install ragprune[langchain]`` or ``ragprune[llamaindex]``).
"""

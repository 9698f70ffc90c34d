"""trajdocs: browse LLM reinforcement-learning trajectory dumps as an MkDocs site."""

__version__ = "0.1.0"

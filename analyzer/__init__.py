"""canary-analyzer: statistical canary rollouts for LoRA adapters on shared vLLM base models."""

__version__ = "0.1.0"

"""EVO RL (import name ``tmrl2``): real-time distributed reinforcement learning."""

__version__ = "0.1.0"

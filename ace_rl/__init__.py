"""ace-rl: a reference implementation of ACE (Ji et al., ICML 2024)."""

__version__ = "0.1.0"

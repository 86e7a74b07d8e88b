"""Instruction optimization: candidate instructions, search over them, and the DSPy bridge."""

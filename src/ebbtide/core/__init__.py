"""Foundations every layer may use: the clock and the domain error tree."""

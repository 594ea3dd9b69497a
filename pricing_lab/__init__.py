"""pricing_lab: a local, exact, reproducible simulation lab for credit-based pricing."""

from pricing_lab.errors import InputError, PricingLabError, Problem, ValidationError

__all__ = ["InputError", "PricingLabError", "Problem", "ValidationError"]
__version__ = "0.1.0"

"""Verification: the regression gate (`check`) and re-execution of finished runs (`reproduce`)."""

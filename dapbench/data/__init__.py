"""Logged datasets: make (behaviour policy), load (Minari), validate."""

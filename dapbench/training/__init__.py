"""The trainer: epochs, evaluation, checkpoint/resume, timing, memory."""

"""Training stack: data preparation, `accelerate launch train/run.py`, evaluation."""

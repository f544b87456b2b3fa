"""Training: the recipe's configuration, the training-sample reader and the loop."""

"""Scoring imputation: the per-gene metrics (RMSE, MAE, PCC, SSIM), the hold-out benchmark protocol
of design.md that runs registered methods on the measured 1/4 sub-lattice and scores the hidden
spots, and the plot of its record. A change to how methods are compared or scored belongs here.
Importing this package imports none of its modules.
"""

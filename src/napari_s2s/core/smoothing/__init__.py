"""Non-learned predictors of gene values at unmeasured positions (no torch, napari or Qt).

The building blocks of the classical baselines (``core/methods``) and of the S2S engine's base
predictor (``core/s2s``), in one place so that neither imports the other:

* :mod:`.gaussian`: Gaussian-weighted means (Nadaraya-Watson) and their leave-one-out bandwidth;
* :mod:`.kriging`: Gaussian-process regression (kriging) with a nugget, hyper-parameters by
  leave-one-out on the measured spots;
* :mod:`.pca`: denoising by projection on principal components over many genes;
* :mod:`.ridge`: ridge regression with GCV, and the feature (H&E) term of a smoother's residual;
* :mod:`.base`: the best of these for a slide, chosen by K-fold cross-validation over its
  measured spots (what S2S starts from and falls back to).
"""

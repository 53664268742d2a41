"""The S2S-ST engine: its settings (:mod:`.config`), the CDCIN network, the sparser-to-sparse
sampling of training pairs, the natural-image co-learning (and the slide's own H&E as co-learning
images), the training loop, test-time-augmented imputation, the
:class:`~napari_s2s.core.s2s.engine.S2SImputer` that runs them on a slide, device selection and the
writing of imputed results. A change to how the model is built, trained or applied belongs here.
This ``__init__`` imports nothing so that importing the package does not load torch; import the
modules themselves (``from napari_s2s.core.s2s.engine import S2SImputer``).
"""

"""napari adapters: reader, writer, sample data, dock widget and the small models behind it.

Only modules whose name says so touch Qt (:mod:`.widget`, :mod:`.loss_plot`, :mod:`.workers`);
the others (:mod:`.layers`, :mod:`.gene_picker`, :mod:`.review`, :mod:`.settings`, :mod:`.state`)
are plain Python, testable without a display. Nothing in :mod:`napari_s2s.core` imports from here.
"""

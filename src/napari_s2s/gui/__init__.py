"""napari adapters: reader, writer, sample data, dock widget and the small models behind it.

The dock is one module per box (:mod:`.slide_box` with :mod:`.open_menu`, :mod:`.genes_box`,
:mod:`.settings_box`, :mod:`.train_box`, :mod:`.results_box`, :mod:`.review_panel`), wired by
:mod:`.widget`; these and :mod:`.loss_plot`, :mod:`.progress`, :mod:`.workers` touch Qt. The models
behind them (:mod:`.layers`, :mod:`.gene_picker`, :mod:`.review`, :mod:`.settings`, :mod:`.state`,
:mod:`.training`) are plain Python, testable without a display; :mod:`.run_layers`,
:mod:`.gene_display` and :mod:`.side_by_side` work on a viewer without widgets. Nothing in
:mod:`napari_s2s.core` imports from here.
"""

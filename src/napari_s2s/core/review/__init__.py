"""Blinded review sessions: what readers compare (:mod:`.session`), how a session is made
(:mod:`.create`), its maps (:mod:`.maps`), each reader's answers (:mod:`.answers`), the merged
statistics (:mod:`.stats`) and the HTML report (:mod:`.report`, pictures in :mod:`.render`).
Display-free: the dock's "Blinded reading" view and the CLI call these.
"""

"""Experiments: designs with treatments, participants who arrive by one link, rooms, exports.

A researcher's study as a first-class object (docs/experiments.md): ``design`` validates a
design document, ``assignment`` draws the balanced, seeded treatment sequence, ``materials``
writes instructions and the comprehension quiz from a scenario's own numbers, ``services``
changes experiments and participants (rooms are ordinary games), ``exports`` writes the tidy
tables and their codebook, ``views`` and ``urls`` serve the participants' pages.
"""

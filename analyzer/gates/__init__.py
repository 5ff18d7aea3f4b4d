"""Gates: receivers that must say yes before a rollout advances or promotes (Flagger-style).

The plugin kind the rollout's decisions wait on: one interface (base.py), one file per
implementation (http.py), a factory (factory.py); a rule with no gates has none to ask.

Must not: decide anything but open or shut.
"""

"""Network governance: the policy record, quotas and usage (:mod:`.policy`), and its rules (:mod:`.rules`).

docs/governance.md describes the model; docs/did-method.md the ``govern`` operation's format.
"""

"""Pure rollout logic: the state machine, its serialized state, and weight arithmetic.

Nothing here reads a clock or touches an object; time comes in as an argument.
"""

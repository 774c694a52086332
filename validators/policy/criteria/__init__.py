"""The criterion kinds, one module each; `validators.policy.registry` imports every module here.

To add a kind, add a module with one class: derived from `CriterionBase`, decorated with
`@register`, declaring `kind: Literal["<kind>"]` and its fields, and implementing `judge`.
Nothing else changes: the policy's union of criteria, its JSON Schema and its messages read the
registry.
"""

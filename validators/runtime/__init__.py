"""Model formats, static inspection at intake, and the sandboxed runner of vendor models.

Submodules import their heavy dependencies (onnx, torch, monai) inside functions, so importing
this package or `validators.runtime.intake` stays cheap.
"""

"""sparq: an open int8 inference core in Amaranth HDL and its bit-exact golden models.

The repository keeps its packages at its root (hw/, golden/, sim/, spec/); pyproject.toml's
package-dir installs them under this one top-level package, as ``sparq.hw``, ``sparq.golden``,
``sparq.sim`` and ``sparq.spec``, and the code imports them so (``from sparq.hw.core import
Core``), installed or from the repository's editable install (``pip install -e .``).
"""

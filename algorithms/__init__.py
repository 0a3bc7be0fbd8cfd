"""dapbench's built-in algorithms, one module per family. They register like any third party's, through the
`dapbench.algorithms` entry points in dapbench's pyproject.toml; importing this package registers nothing."""

__dapbench__ = True  # lets the registry tell this package from a foreign one named `algorithms`

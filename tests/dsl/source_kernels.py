"""Kernels written from source text into a file, so that errors can name that file and line."""
PRELUDE = "import torch\nimport helion_ops.dsl as helion\nimport helion_ops.dsl.language as hl\n\n"


def kernel_from_source(path, text: str, name: str = "k"):
    """Write PRELUDE + ``text`` to ``path``, run it, return its kernel ``name`` (line 5 is text's first)."""
    path.write_text(PRELUDE + text)
    ns: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    return ns[name]


def one_loop_kernel(path, stmt: str, params: str = "x: torch.Tensor", block: int = 16):
    """A kernel ``k(params)`` whose one tile loop over x's rows runs ``stmt`` (at line 9) and returns
    ``out = torch.empty_like(x)``."""
    return kernel_from_source(path, f"@helion.kernel(config=helion.Config(block_sizes=[{block}]))\n"
                                    f"def k({params}) -> torch.Tensor:\n"
                                    "    out = torch.empty_like(x)\n"
                                    "    for t in hl.tile(x.size(0)):\n"
                                    f"        {stmt}\n"
                                    "    return out\n")

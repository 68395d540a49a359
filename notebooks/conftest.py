"""nbval's settings for the notebooks (`make notebooks`).

nbval waits a fixed 5 s for each output message that follows a cell's reply (IPyNbCell.output_timeout, not an
option: computationalmodelling/nbval#136). On a busy 2-core machine the kernel's output of a long cell can take
longer to arrive, and the cell fails though it ran; OUTPUT_SECONDS waits longer. A cell's own time limit stays
nbval's `--nbval-cell-timeout`.
"""

OUTPUT_SECONDS = 60


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = OUTPUT_SECONDS

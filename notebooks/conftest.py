"""nbval's settings for the notebooks (`make notebooks`).

nbval reads a kernel's output only after a cell's reply, and the kernel's output socket drops messages once about
a thousand wait unread (ZeroMQ's default high-water mark). A long cell's progress bars send a few messages per
redraw: notebook 06's sweep, on full-smoke, sent about 3,500, lost its final "idle" message, and nbval waited
for it until it failed the cell though the cell had run. So under nbval the bars redraw at most once every
BAR_SECONDS (tqdm's own TQDM_MININTERVAL setting; the kernels inherit it), and nbval waits OUTPUT_SECONDS, not its
fixed 5, for each message after the reply (IPyNbCell.output_timeout: computationalmodelling/nbval#136).
In JupyterLab the page reads the output as it comes, and the bars redraw as often as tqdm likes.
"""

import os

BAR_SECONDS = 30
OUTPUT_SECONDS = 60

os.environ.setdefault("TQDM_MININTERVAL", str(BAR_SECONDS))


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook cells
            item.output_timeout = OUTPUT_SECONDS

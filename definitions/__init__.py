"""The example Dagster project: kie.ai Ideogram images from prompt files into S3.

Load it with ``dagster dev -w workspace.yaml`` or ``dagster ... -m definitions``.
"""

from definitions.definitions import defs

__all__ = ["defs"]

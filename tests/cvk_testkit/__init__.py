"""The pack's test kit: load the pack as one package, run API-format workflows the way ComfyUI does,
stand-ins for the few core nodes our workflows use, analytic denoisers, workflow-format checks."""
from .pack import PACKAGE, ROOT, load_pack  # noqa: F401

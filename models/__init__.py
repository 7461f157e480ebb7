"""Network code and adapters that turn a loaded network into a denoiser; ``configs/`` holds the shipped configs."""
import logging


class _EmptyFloat32Notice(logging.Filter):
    """diffusers warns on every ``.to(dtype)`` of a model, ``from_unet2d`` included, that it has "modules that
    should be kept in float32: []" — an empty list (its check is ``is not None``): a line that says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFloat32Notice())
